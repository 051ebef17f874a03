from pathlib import Path

import pytest

from flows.config import ConfigError, RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


def test_local_config_values():
    cfg = load_config(ROOT / "configs/local.yaml")
    assert cfg.input == (".cache/sample/sample.warc.gz",)
    assert cfg.extract.engine == "lexbor"
    assert cfg.select.enabled is True


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_top_level_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key outptu"):
        load_config(write(tmp_path, "outptu: x\n"))


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key extract\.min_img_size"):
        load_config(write(tmp_path, "extract:\n  min_img_size: 3\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"extract\.min_image_size: expected int"):
        load_config(write(tmp_path, "extract:\n  min_image_size: big\n"))
    with pytest.raises(ConfigError, match=r"select\.enabled: expected bool"):
        load_config(write(tmp_path, "select:\n  enabled: 3\n"))


def test_value_checks_fail_at_load(tmp_path):
    with pytest.raises(ConfigError, match="compression"):
        load_config(write(tmp_path, "writer:\n  compression: lzma\n"))


def test_set_overrides_are_yaml_scalars_and_checked(tmp_path):
    cfg = load_config(write(tmp_path, "output: a\n"), ["extract.min_image_size=64", "select.enabled=false",
                                                        "ray.address=null"])
    assert cfg.extract.min_image_size == 64 and cfg.select.enabled is False and cfg.ray.address is None
    with pytest.raises(ConfigError, match=r"unknown config key reader\.nope"):
        load_config(None, ["reader.nope=1"])
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(None, ["reader.sniff"])


def test_cli_replacements_and_single_string_input():
    cfg = load_config(None, [], input=["a.warc.gz", "b.warc"], output="/tmp/o")
    assert cfg.input == ("a.warc.gz", "b.warc") and cfg.output == "/tmp/o"
    assert load_config(None, ["input=x.warc"]).input == ("x.warc",)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [\n"))


def test_config_hash_tracks_processing_not_location():
    base = load_config(None)
    assert base.config_hash() == load_config(None, [], output="elsewhere", input=["x"]).config_hash()
    assert base.config_hash() == load_config(None, ["ray.num_cpus=1"]).config_hash()
    assert base.config_hash() != load_config(None, ["extract.min_image_size=1"]).config_hash()
