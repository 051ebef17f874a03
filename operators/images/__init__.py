"""The image stage: fetching (`fetch`), decoding and hashing (`decode`), the Open-NSFW and CLIP
models (`models`) and the stage's per-document rules (`stage`)."""
