"""Built-in sample WARC: a small, realistic, fully deterministic Common-Crawl-like file.

    python -m flows.make_sample --out .cache/sample/sample.warc.gz [--manifest m.json]

Standard library only. Layout follows Common Crawl: WARC/1.0, one gzip member per record,
``warcinfo`` first, every ``response`` preceded by its ``request``; sha1/base32 digests.
Payload digests are taken over the bytes after the HTTP headers exactly as stored (for the
chunked page that is the chunked stream), the convention of warcio/wget.
All hosts are reserved example.* names, all prose is original, all PNGs are generated here.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import html
import json
import os
import struct
import sys
import uuid
import zlib
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

T0 = dt.datetime(2024, 3, 5, 10, 0, 0, tzinfo=dt.timezone.utc)
NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://interleaf.example.org/sample-warc")
WARC_NAME = "sample.warc.gz"  # fixed, so the bytes do not depend on the output path
UA = "CCBot/2.0 (https://commoncrawl.org/faq/)"
REVISIT_PROFILE = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"

# ---------------------------------------------------------------- prose (original text)
# key: (title, author, date, paragraphs)
ARTICLES = {
"river": ("Salmon return to the Alder River after dam removal", "Ruth Calloway", "2024-03-04", (
"For the first time in almost ninety years, chinook salmon have been counted above the old mill site on the Alder River, eighteen months after the last of three concrete dams was cut away and hauled off by truck. Volunteers from the Alder Valley Watershed Council walked the upper reaches every morning in October and recorded forty-one redds, the gravel nests that spawning females dig with their tails.",
"\u201cWe expected it to take five years, maybe ten,\u201d said Maria Okafor, a fisheries biologist who has led the monitoring programme since 2019. \u201cThe fish clearly had other plans. As soon as the river found its old channel, they were there.\u201d Okafor cautioned that a single season proves little, but she said the numbers were well above the most optimistic projections in the restoration plan.",
"The dams were built between 1911 and 1934 to power a woollen mill and later a small hydroelectric station that closed in the 1970s. By the time the county bought the site, the reservoirs behind them had filled with more than two hundred thousand cubic metres of silt. Engineers released that sediment gradually over two winters, timing the work to high flows so that the river could carry it downstream without smothering the spawning beds below.",
"Not everyone welcomed the project. Some residents of Millbrook, the village that grew up around the mill pond, argued that the reservoir was part of the town\u2019s character and a valuable place for skating and fishing. A compromise preserved the old turbine house as a small museum, and a new footpath now follows the river through the former lake bed, where willows and alders planted by schoolchildren are already taller than the people walking past them.",
"The recovery is not limited to salmon. Surveyors have reported lamprey, sculpin and freshwater mussels in stretches that were under still water for most of the twentieth century, and water temperatures in late summer have dropped by almost two degrees because the river now runs faster and shallower under shade. Otters, absent from the valley for decades, were photographed by a trail camera in January.",
"The council plans to publish its full monitoring report in the spring. Okafor said the next challenge is a culvert under the county road twelve kilometres upstream, which blocks access to another thirty kilometres of cold, clean tributaries. \u201cWe have shown what happens when you give a river room,\u201d she said. \u201cNow we need to finish the job.\u201d")),
"sourdough": ("Baking sourdough at altitude: what I learned in a year at 2,300 metres", "Nina Albrecht", "2024-02-18", (
"When we moved to the mountains last spring, I assumed my bread would come with me unchanged. I had kept the same starter alive for six years, fed it on a schedule I could recite in my sleep, and baked two loaves every Saturday without thinking much about it. The first loaf I baked in the new kitchen rose like a balloon, collapsed in the oven and came out with a crust like cardboard and a sour, gummy crumb.",
"The problem, as any baker who lives high up will tell you, is air pressure. At 2,300 metres the air pushes down on the dough with roughly three quarters of the force it does at sea level, so the gas produced by the yeast expands faster and further. Water also boils at around 92 degrees, which means the inside of a loaf sets at a lower temperature and the dough dries out more quickly while it proofs.",
"My first change was the simplest: I cut the proofing time. Instead of leaving the shaped loaf in the fridge overnight and baking it cold, I now shape it in the evening and bake it first thing in the morning, after about ten hours rather than sixteen. The dough is less puffy, holds its shape when I score it, and the oven spring is gentle instead of explosive.",
"Second, I added more water. The dry mountain air pulls moisture out of everything, including flour, and a dough that felt perfect at 72 percent hydration in the city now needs closer to 78. I also keep a damp towel over the bowl during bulk fermentation and bake with a lid on the pot for the first twenty-five minutes, which traps steam and keeps the crust from setting too early.",
"Finally, I feed the starter less generously. A starter at altitude becomes active very quickly, peaks early and then turns acidic. I now use a ratio of one part starter to five parts flour and water, which slows it down enough that I can catch it at its peak before breakfast. If your loaves taste sharper than they used to, this is the first thing I would try.",
"None of this is exact science, and every kitchen is different. Keep notes, change one thing at a time, and do not throw away the failures: a dense loaf still makes excellent croutons. After a year of experiments, my Saturday bread is back to where it was, and my neighbours have started asking for a piece of the starter.")),
"lighthouse": ("The last lighthouse keepers of Gull Point", "Sam Whitfield", "2009-07-12", (
"For ninety-six years, someone climbed the one hundred and twelve steps of the Gull Point light every evening at dusk. The tower was automated in 1987, and the last keeper, Thomas Reyes, handed his keys to a technician from the coast guard and moved into a bungalow three kilometres inland, close enough to see the beam sweep across his bedroom ceiling.",
"Reyes, now eighty-one, still remembers the routine in detail. The lamp had to be lit half an hour before sunset, the lens polished with a chamois cloth every morning, and the clockwork that turned the lens wound by hand every four hours through the night. In fog, the keeper sounded the horn every thirty seconds until visibility returned, sometimes for two days without proper sleep.",
"Life at the station was isolated but rarely lonely. Supply boats came every second Thursday, weather permitting, and the keepers' children rowed across the bay to school when the sea was calm. Reyes's wife, Elena, kept a logbook of birds that struck the lantern glass during migration; her notes, filled with careful sketches, are now held by the regional natural history society.",
"The station's most dramatic night came in November 1962, when a cargo ship lost power in a storm and drifted toward the reef below the tower. Reyes's father, who was keeper at the time, kept the light burning on backup oil lamps after the generator failed and fired signal rockets until a lifeboat arrived. All nineteen crew were rescued.",
"Today the lighthouse is maintained by a volunteer association that opens the tower to visitors on summer weekends. Reyes gives a talk there once a month, and he still checks the horizon whenever he walks past a window at dusk. \"The light does not need me anymore,\" he says. \"But I think I still need the light.\"")),
"moor": ("Moore als Klimaschützer: Warum die Wiedervernässung so schwierig ist", "Jens Hartmann", "2024-02-27", (
"Im Teufelsmoor nördlich von Bremen steht das Wasser wieder bis knapp unter die Grasnarbe. Wo noch vor zehn Jahren Mais wuchs, breiten sich heute Torfmoose und Wollgras aus, und im Frühjahr sind Kraniche zu hören. Das Projekt gilt als Vorbild für die Wiedervernässung entwässerter Moorflächen, doch es zeigt auch, wie mühsam der Weg dorthin ist.",
"Moore bedecken nur etwa drei Prozent der Landfläche der Erde, speichern aber rund doppelt so viel Kohlenstoff wie alle Wälder zusammen. Solange der Torf nass ist, bleibt der Kohlenstoff gebunden. Wird das Moor entwässert, gelangt Sauerstoff in den Boden, der Torf zersetzt sich und setzt Kohlendioxid frei. In Deutschland stammen nach Schätzungen etwa sieben Prozent der gesamten Treibhausgasemissionen aus entwässerten Moorböden.",
"\u201eDas Wasser zurückzubringen ist technisch gar nicht das Problem\u201c, sagt die Landschaftsökologin Dr. Katrin Meyer, die das Projekt wissenschaftlich begleitet. \u201eMan verschließt die Gräben, baut kleine Staue und wartet. Schwierig wird es, weil auf fast jeder Fläche jemand wirtschaftet, der davon leben muss.\u201c Viele Landwirte haben ihre Betriebe über Generationen auf entwässerten Wiesen aufgebaut.",
"Ein Ausweg könnte die sogenannte Paludikultur sein, also die Bewirtschaftung nasser Moore. Auf den Versuchsflächen wachsen Rohrkolben und Schilf, die sich zu Dämmplatten und Baustoffen verarbeiten lassen. Ein Hektar bringt derzeit allerdings deutlich weniger ein als eine Milchviehweide. Das Land zahlt deshalb eine Ausgleichsprämie von bis zu 1.200 \u20ac pro Hektar und Jahr, befristet auf zunächst zwölf Jahre.",
"Kritiker bemängeln, dass die Förderung zu kurz angelegt sei. Ein wiedervernässtes Moor brauche Jahrzehnte, bis es wieder Torf bildet, und kein Betrieb stelle seine Wirtschaftsweise für ein Programm mit ungewisser Zukunft um. Auch die Nachbarn müssen zustimmen, denn steigende Wasserstände machen nicht an der Grundstücksgrenze halt.",
"Im Teufelsmoor haben sich schließlich vierzehn Eigentümer auf einen gemeinsamen Plan geeinigt. Bis 2030 sollen weitere 800 Hektar vernässt werden. Meyer ist vorsichtig optimistisch: \u201eWenn es hier funktioniert, wo die Interessen so unterschiedlich sind, dann funktioniert es fast überall.\u201c")),
"ostsee": ("Mit dem Rad an der Ostsee: Von Lübeck nach Rostock in fünf Tagen", "Anke Sommer", "2023-10-02", (
"Der Ostseeküsten-Radweg gehört zu den beliebtesten Fernradwegen Deutschlands, und das nicht ohne Grund. Die Strecke ist flach, gut ausgeschildert und führt abwechselnd durch Badeorte, Kiefernwälder und weite Salzwiesen. Wir sind den Abschnitt zwischen Lübeck und Rostock im September gefahren, als die Sommergäste abgereist waren und die Pensionen wieder freie Zimmer hatten.",
"Die erste Etappe von Lübeck nach Travemünde ist kurz, aber sie lohnt sich. Hinter der Altstadt folgt der Weg der Trave bis zur Mündung, vorbei an Werften, Fischerhäusern und der Viermastbark Passat, die heute als Museumsschiff am Priwall liegt. Mit der kleinen Fähre geht es hinüber nach Mecklenburg, und plötzlich wird es still.",
"Zwischen Boltenhagen und Wismar verläuft der Radweg oft direkt an der Steilküste. Bei Westwind sollte man hier etwas mehr Zeit einplanen, denn auf den offenen Abschnitten kann der Gegenwind zermürbend sein. Belohnt wird man mit einem Blick über die Wismarer Bucht und einer Altstadt, deren Backsteinkirchen zum UNESCO-Welterbe gehören.",
"Die dritte und vierte Etappe führen über die Insel Poel und am Salzhaff entlang nach Kühlungsborn. Der Belag wechselt hier zwischen Asphalt, Betonplatten und festem Sand, ein Trekkingrad mit etwas breiteren Reifen ist deshalb sinnvoll. In Rerik lohnt ein Abstecher auf den Schmiedeberg, von dem man bei klarem Wetter beide Ufer des Haffs sieht.",
"Auf der letzten Etappe über Heiligendamm und Warnemünde nach Rostock wird es wieder belebter. Die weiße Bäderarchitektur von Heiligendamm wirkt ein wenig wie aus der Zeit gefallen, und am Strand von Warnemünde kann man den Kreuzfahrtschiffen beim Auslaufen zusehen, bevor man die letzten Kilometer an der Warnow entlang in die Stadt rollt.",
"Insgesamt sind wir rund 240 Kilometer gefahren, mit Tagesetappen zwischen 35 und 60 Kilometern. Übernachtet haben wir in kleinen Pensionen, die wir jeweils am Vortag gebucht haben. Wer lieber im Hochsommer fährt, sollte allerdings frühzeitig reservieren und sich auf volle Radwege in den Badeorten einstellen.")),
"boulangerie": ("À Lyon, la boulangerie de quartier résiste à la grande distribution", "Élise Moreau", "2024-01-23", (
"Il est six heures du matin rue Saint-Georges, et la vitrine de la boulangerie Martin est déjà éclairée. Derrière le comptoir, Claire Martin dispose les premières baguettes, encore trop chaudes pour être emballées. Son mari, Julien, est arrivé au fournil à deux heures et demie, comme tous les jours depuis quinze ans, sauf le lundi.",
"La France compte encore environ trente-trois mille boulangeries artisanales, mais leur nombre diminue lentement. La concurrence des terminaux de cuisson installés dans les supermarchés, la hausse du prix de l'énergie et la difficulté à recruter des apprentis pèsent sur les petites entreprises. Chaque année, plusieurs centaines d'établissements ferment leurs portes.",
"« L'électricité a triplé en deux ans », explique Julien Martin en sortant une fournée de pains de campagne. « Nous avons dû augmenter la baguette de dix centimes, et certains clients ne sont pas revenus. » Pour réduire la facture, le couple a remplacé son vieux four par un modèle mieux isolé et regroupe désormais les cuissons sur des plages horaires plus courtes.",
"La boulangerie mise aussi sur ce que la grande distribution ne sait pas faire. Les farines viennent d'un moulin de la Drôme, le levain est entretenu depuis l'ouverture et la brioche aux pralines, spécialité lyonnaise, est préparée la veille. Le samedi, la file d'attente déborde sur le trottoir, et les habitués échangent les nouvelles du quartier en attendant leur tour.",
"Pour Claire Martin, le rôle social du commerce compte autant que le pain. « Certaines personnes âgées ne parlent qu'à nous dans la journée », dit-elle. Elle met de côté les commandes de ceux qui ne peuvent plus se déplacer, et un voisin les livre à vélo le mercredi. La mairie d'arrondissement soutient désormais ce type d'initiative par une petite subvention.",
"Le couple cherche aujourd'hui un apprenti pour la rentrée. L'annonce est affichée à côté de la caisse depuis trois mois. « Le métier est dur, on ne va pas le cacher », reconnaît Julien. « Mais quand on voit les enfants repartir avec leur pain au chocolat, on se dit que ça vaut encore la peine. »")),
"arrecifes": ("Los arrecifes de coral del Caribe ante un verano récord", "Lucía Ferrer", "2023-11-14", (
"Las aguas del Caribe alcanzaron el verano pasado temperaturas nunca registradas, y los arrecifes de coral lo notaron de inmediato. En la costa de Quintana Roo, buzos científicos documentaron un blanqueamiento masivo que afectó a más del sesenta por ciento de las colonias observadas, desde los corales cerebro hasta las grandes formaciones de cuerno de alce.",
"El blanqueamiento ocurre cuando el calor rompe la relación entre el coral y las algas microscópicas que viven en sus tejidos. Sin ellas, el coral pierde su color y su principal fuente de alimento. Si las temperaturas bajan a tiempo, puede recuperarse en unas semanas; si el estrés se prolonga, muere y el arrecife comienza a cubrirse de algas.",
"«Nunca habíamos visto el blanqueamiento empezar tan pronto ni durar tanto», explica la bióloga marina Lucía Hernández, que coordina una red de monitoreo en la península de Yucatán. «En algunos sitios el agua superó los treinta y un grados durante más de dos meses. Eso es demasiado incluso para especies que consideramos resistentes.»",
"Ante la emergencia, varios equipos trasladaron fragmentos de coral a viveros en aguas más profundas y frescas, o incluso a tanques en tierra. Es una medida de rescate, no una solución, advierten los investigadores, pero permite conservar la diversidad genética de las colonias que mejor toleran el calor y utilizarlas después para repoblar los arrecifes dañados.",
"Los arrecifes sostienen la pesca artesanal, protegen la costa del oleaje durante los huracanes y atraen a millones de turistas cada año. Por eso, cooperativas de pescadores y hoteles se han sumado a las tareas de vigilancia y restauración. En Puerto Morelos, guías de buceo recogen datos sobre el estado de los corales durante sus salidas diarias con visitantes.",
"Los científicos coinciden en que la supervivencia de los arrecifes depende, en última instancia, de frenar el calentamiento global. Mientras tanto, reducir la contaminación de las aguas residuales y la pesca excesiva puede dar a los corales un margen adicional para recuperarse. «Cada arrecife sano que conservemos», dice Hernández, «será una fuente de larvas para los que vengan después»."))
,
"tetsudo": ("ローカル線を守る町の挑戦", "山田 花子", "2024-02-09", (
"山あいの小さな町を走る単線のローカル線が、今年で開業百周年を迎えた。一日の乗客数は最盛期の五分の一にまで減り、廃線の議論は何度も持ち上がったが、そのたびに住民たちは路線を残す道を選んできた。駅舎の掃除から観光列車の企画まで、町ぐるみの取り組みが続いている。",
"転機となったのは十年前、鉄道会社が赤字路線の見直しを発表したことだった。町は住民説明会を重ね、通学に使う高校生や病院に通う高齢者の声を集めた。「車を運転できない人にとって、列車は生活そのものです」と、当時の町長は語る。町は運行費の一部を負担する協定を結び、路線の存続が決まった。",
"その後、住民有志が「駅を守る会」を結成した。無人駅となった各駅で花壇を手入れし、待合室には地元の小学生が描いた絵を飾った。週末には地元の農家が駅前で野菜を売り、列車の到着に合わせて小さな市場が開かれる。駅は単なる乗り場ではなく、人が集まる場所に変わりつつある。",
"観光客を呼び込む工夫も進む。秋の紅葉の季節には、古い車両を改装した観光列車が運行され、車内では地元の酒や郷土料理の弁当が振る舞われる。昨年は県外から約二万人が訪れ、沿線の旅館や食堂も活気を取り戻した。写真愛好家の間では、鉄橋を渡る列車と渓谷の景色が人気の撮影地となっている。",
"それでも課題は多い。線路や橋の老朽化は進み、大雨のたびに運休が発生する。維持費は年々増えており、町の財政にとって負担は小さくない。鉄道会社の担当者は「利用者が増えなければ、長期的な存続は約束できない」と話す。町は通勤定期券の補助や、バスとの乗り継ぎ改善などで利用の拡大を目指している。",
"百周年の記念式典では、開業当時の写真を集めた展示会も開かれた。会場を訪れた八十代の女性は、嫁入りの日にこの列車で町に来たことを懐かしそうに振り返った。「この線路は、町の記憶そのものです。孫の世代にも残したい」。住民たちの挑戦は、次の百年に向けて続いていく。")),
"taiga": ("Как сибирская тайга восстанавливается после пожаров", "Ирина Волкова", "2023-12-06", (
"Летом позапрошлого года лесные пожары в Красноярском крае прошли по территории, сравнимой по площади с небольшой европейской страной. Сейчас, спустя два сезона, учёные из Института леса вернулись на гари, чтобы понять, как быстро тайга способна восстановиться и что мешает ей это сделать.",
"Первые признаки жизни появились уже через несколько недель после того, как огонь погас. На выжженной почве проросли иван-чай и злаки, а из уцелевших корней пошла поросль берёзы и осины. \"Лиственные породы всегда приходят первыми\", объясняет эколог Анна Соколова, руководитель экспедиции. \"Они создают тень и защищают почву, а под их пологом позже поднимаются хвойные\".",
"Однако сосна и лиственница восстанавливаются далеко не везде. Там, где пожар был слабым и прошёл по низу, сохранились деревья, способные дать семена. Там же, где огонь поднялся в кроны и выжег подстилку до минерального слоя, семенам просто неоткуда взяться. На таких участках через два года исследователи не нашли ни одного хвойного всхода.",
"Особую тревогу вызывает вечная мерзлота. Лесная подстилка и мох работают как теплоизоляция, и после их исчезновения грунт летом оттаивает глубже. Почва проседает, образуются заболоченные понижения, а из оттаявших слоёв выделяются углекислый газ и метан. По оценкам учёных, на некоторых гарях глубина сезонного оттаивания увеличилась почти вдвое. Всё это меняет и облик леса, и жизнь его обитателей.",
"Чтобы ускорить восстановление, лесничества высаживают саженцы сосны, но площадь гарей слишком велика, чтобы засадить её целиком. Поэтому экспедиция составляет карты участков, где естественное возобновление маловероятно, чтобы сосредоточить посадки именно там. Для этого используются снимки со спутников и беспилотников, которые сверяются с данными полевых наблюдений. Часть работ выполняют добровольцы, которые каждое лето приезжают в экспедицию из разных городов страны.",
"По словам Соколовой, полное восстановление тайги на крупных гарях займёт от восьмидесяти до ста лет, и всё это время лес будет уязвим для новых пожаров. \"Главное, что мы можем сделать сейчас, - это не допустить, чтобы огонь возвращался на те же места каждые несколько лет\", говорит она.")),
"sahra": ("الزراعة في الصحراء: تجارب جديدة لتوفير المياه", "سارة المنصوري", "2024-01-30", (
"في أطراف الصحراء جنوب المدينة، تمتد صفوف خضراء من نباتات الطماطم والخيار داخل بيوت محمية لا تشبه البيوت الزراعية التقليدية. فهنا تُروى النباتات بمياه البحر بعد تحليتها بالطاقة الشمسية، وتُجمع الرطوبة المتكثفة على الجدران ليعاد استخدامها. ويقول القائمون على المشروع إنه يستهلك أقل من عُشر المياه التي تحتاجها الزراعة المكشوفة.",
"بدأت التجربة قبل خمس سنوات على مساحة لا تتجاوز هكتارًا واحدًا، وتشمل اليوم أكثر من عشرين هكتارًا. وتقول المهندسة الزراعية ليلى الحسن، مديرة المشروع، إن الفكرة الأساسية بسيطة: «الشمس متوفرة هنا طوال العام، والبحر قريب. التحدي كان في جعل التقنية رخيصة بما يكفي ليستفيد منها المزارع الصغير».",
"وتعاني المنطقة من شح شديد في المياه الجوفية، إذ انخفض منسوب الآبار خلال العقدين الماضيين بأكثر من ثلاثين مترًا في بعض المواقع، وارتفعت ملوحتها إلى حد جعل كثيرًا من الأراضي غير صالحة للزراعة. ودفع ذلك عددًا من الأسر الريفية إلى ترك مزارعها والانتقال إلى المدن بحثًا عن عمل. وتشير تقديرات محلية إلى أن المساحات المزروعة تراجعت إلى النصف خلال تلك الفترة.",
"ويعتمد المشروع أيضًا على الزراعة دون تربة في بعض البيوت، حيث تنمو النباتات في أحواض من ألياف جوز الهند، وتصل إليها المياه والعناصر الغذائية بدقة عبر أنابيب رفيعة. ويتيح ذلك التحكم في كل قطرة، كما يقلل من الآفات والأمراض التي تنتقل عادة عبر التربة. ويقول أحد المزارعين المشاركين إن إنتاج بيته المحمي الصغير بات يكفي أسرته ويفيض منه ما يبيعه في السوق الأسبوعي.",
"غير أن التكلفة الأولية ما زالت مرتفعة، ولا يستطيع معظم المزارعين تحملها دون دعم. ولهذا تعمل إدارة المشروع مع بنك محلي على برنامج قروض ميسرة، ومع جمعية تعاونية تتولى تسويق المحصول في أسواق المدن المجاورة. وقد انضمت حتى الآن خمس عشرة أسرة إلى البرنامج.",
"ويرى خبراء أن مثل هذه التجارب قد تساعد المناطق الجافة على مواجهة آثار تغير المناخ، لكنهم يحذرون من أن نجاحها يتطلب صيانة مستمرة وتدريبًا للمزارعين. وتختم ليلى الحسن بقولها: «لا نريد أن نصنع معجزة في الصحراء، بل نريد أن نثبت أن الزراعة هنا ممكنة ومجدية إذا أحسنّا استخدام ما نملك».")),
"biblioteche": ("Le biblioteche di quartiere tornano a riempirsi", "Marco Bellini", "2024-02-02", (
"A Bologna, la biblioteca di quartiere di via Saragozza apre alle otto del mattino, ma già alle sette e mezza c'è chi aspetta davanti alla porta. Sono soprattutto studenti universitari in cerca di un tavolo con la presa elettrica, ma anche pensionati che vengono a leggere i giornali e genitori con bambini piccoli diretti alla sala ragazzi.",
"Dopo anni di calo, le biblioteche comunali registrano di nuovo un aumento dei frequentatori. Secondo i dati raccolti dalle amministrazioni locali, gli ingressi sono cresciuti in molte città. Il prestito dei libri cartacei è stabile, mentre crescono rapidamente le attività: corsi di lingua, laboratori di informatica, gruppi di lettura e consulenze per compilare i moduli della pubblica amministrazione.",
"«La biblioteca è diventata una piazza coperta», spiega la direttrice, Francesca Rinaldi. «Qui si entra senza dover comprare niente, si resta quanto si vuole e si incontrano persone diverse. In una città dove gli affitti sono sempre più alti, avere uno spazio caldo e tranquillo dove studiare fa una differenza enorme.»",
"Il successo porta però anche problemi. Gli spazi sono spesso insufficienti, il personale è ridotto e molti servizi si reggono sul lavoro dei volontari. Nei mesi degli esami, i posti a sedere si esauriscono in pochi minuti, e la biblioteca ha dovuto introdurre un sistema di prenotazione online che non tutti gli utenti abituali hanno accolto con favore.",
"Il Comune ha annunciato un piano per estendere l'orario di apertura alla sera e alla domenica in tre biblioteche pilota, a partire dal prossimo autunno. Per Rinaldi è un passo importante, ma non basta: «Servono investimenti stabili, non progetti di un anno. Le biblioteche funzionano quando le persone sanno che ci saranno anche domani».",
"Intanto, in via Saragozza, la giornata si chiude come sempre alle sette di sera. Gli ultimi studenti raccolgono libri e computer, la bibliotecaria spegne le luci della sala ragazzi e qualcuno chiede già a che ora si potrà entrare domani mattina.")),
"notfound": ("Page not found", "", "", (
"Sorry, the page you are looking for does not exist or has been moved.",
"Try the search box above, or go back to the home page to find our latest stories.")),
}
# the near-copy: the river story as syndicated elsewhere, a few words changed
NEAR_COPY_EDITS = (("forty-one redds", "forty-three redds"), ("eighteen months after", "a year and a half after"),
                   ("almost two degrees", "nearly two degrees"), ("in the spring", "in April"))

# boilerplate strings per language: nav | cookie | accept | settings | related | related titles | ad | share |
# comments | newsletter | footer links | rights | byline
UI = {
"en": ("Home|World|Science|Culture|Travel|Opinion", "We and our partners use cookies to personalise content and ads, to provide social media features and to analyse our traffic.", "Accept all", "Cookie settings", "Related articles", "Why wetlands matter more than ever~Ten easy day hikes near the coast~The quiet comeback of the village shop", "Advertisement", "Share", "Comments", "Sign up for our weekly newsletter", "About us|Contact|Privacy policy|Terms of use", "All rights reserved.", "By"),
"de": ("Startseite|Politik|Wissen|Kultur|Reise|Meinung", "Wir und unsere Partner verwenden Cookies, um Inhalte und Anzeigen zu personalisieren und die Zugriffe auf unsere Website zu analysieren.", "Alle akzeptieren", "Einstellungen", "Das könnte Sie auch interessieren", "Warum Feuchtgebiete wichtiger sind denn je~Zehn Wanderungen an der Küste~Die Rückkehr des Dorfladens", "Anzeige", "Teilen", "Kommentare", "Jetzt den Newsletter abonnieren", "Über uns|Kontakt|Datenschutz|Impressum", "Alle Rechte vorbehalten.", "Von"),
"fr": ("Accueil|Actualités|Sciences|Culture|Voyages|Opinions", "Nous et nos partenaires utilisons des cookies pour personnaliser le contenu et les publicités et pour analyser notre trafic.", "Tout accepter", "Paramétrer", "À lire aussi", "Pourquoi les zones humides comptent plus que jamais~Dix randonnées faciles sur le littoral~Le retour discret des commerces de village", "Publicité", "Partager", "Commentaires", "Inscrivez-vous à notre lettre d'information", "Qui sommes-nous|Contact|Confidentialité|Mentions légales", "Tous droits réservés.", "Par"),
"es": ("Inicio|Actualidad|Ciencia|Cultura|Viajes|Opinión", "Nosotros y nuestros socios utilizamos cookies para personalizar el contenido y los anuncios y para analizar nuestro tráfico.", "Aceptar todo", "Configurar", "Artículos relacionados", "Por qué los humedales importan más que nunca~Diez rutas fáciles por la costa~El regreso silencioso de la tienda del pueblo", "Publicidad", "Compartir", "Comentarios", "Suscríbete a nuestro boletín", "Quiénes somos|Contacto|Privacidad|Aviso legal", "Todos los derechos reservados.", "Por"),
"ja": ("ホーム|ニュース|科学|文化|旅行|オピニオン", "当サイトではコンテンツや広告のパーソナライズ、アクセス解析のためにクッキーを使用しています。", "すべて同意する", "設定", "関連記事", "湿地の役割を見直す~海辺の日帰りハイキング10選~村の商店が戻ってきた", "広告", "共有", "コメント", "ニュースレターを購読する", "会社概要|お問い合わせ|プライバシーポリシー|利用規約", "無断転載を禁じます。", "文"),
"ru": ("Главная|Новости|Наука|Культура|Путешествия|Мнения", "Мы и наши партнеры используем файлы cookie для персонализации контента и рекламы, а также для анализа посещаемости.", "Принять все", "Настройки", "Читайте также", "Почему болота важнее, чем кажется~Десять простых маршрутов у моря~Тихое возвращение сельского магазина", "Реклама", "Поделиться", "Комментарии", "Подпишитесь на нашу рассылку", "О нас|Контакты|Конфиденциальность|Условия использования", "Все права защищены.", "Автор:"),
"ar": ("الرئيسية|أخبار|علوم|ثقافة|سفر|رأي", "نستخدم نحن وشركاؤنا ملفات تعريف الارتباط لتخصيص المحتوى والإعلانات وتحليل حركة الزيارات.", "قبول الكل", "الإعدادات", "مقالات ذات صلة", "لماذا تهم الأراضي الرطبة أكثر من أي وقت مضى~عشر جولات سهلة على الساحل~العودة الهادئة لمتجر القرية", "إعلان", "مشاركة", "التعليقات", "اشترك في نشرتنا الإخبارية", "من نحن|اتصل بنا|سياسة الخصوصية|شروط الاستخدام", "جميع الحقوق محفوظة.", "بقلم"),
"it": ("Home|Cronaca|Scienza|Cultura|Viaggi|Opinioni", "Noi e i nostri partner utilizziamo cookie per personalizzare contenuti e annunci e per analizzare il traffico.", "Accetta tutto", "Impostazioni", "Articoli correlati", "Perché le zone umide contano più che mai~Dieci facili escursioni sulla costa~Il ritorno silenzioso della bottega di paese", "Pubblicità", "Condividi", "Commenti", "Iscriviti alla nostra newsletter", "Chi siamo|Contatti|Privacy|Note legali", "Tutti i diritti riservati.", "di"),
}
UI_KEYS = "nav cookie accept settings related rel ad share comments newsletter links rights by".split()

COMMENTS = {
"river": (("riverwatcher", "I fished this river as a boy and never saw a salmon above the mill. Wonderful news."),
          ("J. Patel", "Good to see the culvert mentioned. The county has been promising to fix it for years.")),
"sourdough": (("Hannah K.", "Thank you! I live at 1,800 m and my loaves were collapsing all winter. Trying the shorter proof this weekend."),
              ("breadnerd", "Have you tried lowering the starter percentage instead of the proofing time?")),
"boulangerie": (("Sophie L.", "Meilleure brioche aux pralines du quartier, je confirme !"),
                ("Marc", "Bon courage à vous deux. On a besoin de commerces comme le vôtre.")),
"sahra": (("أحمد", "تجربة رائعة، نتمنى أن تصل إلى قرى الجنوب أيضًا."),),
}


# ---------------------------------------------------------------- images (real PNGs, integer-only maths)
def png(w: int, h: int, px) -> bytes:
    raw = b"".join(b"\x00" + bytes(c for x in range(w) for c in px(x, y)) for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _river(x, y):  # sky, green banks, a winding blue river
    if y < 60:
        return (110 + y, 160 + y // 2, 235)
    mid = 125 + abs(x % 96 - 48) // 2 - 12
    if abs(y - mid) < 12 + (y - 60) // 8:
        return (40 + (x * 7 + y * 3) % 20, 95 + y // 4, 170 + (y % 9) * 3)
    return (60 + (x * y) % 25, 130 - y // 4 + (x % 5) * 4, 55)


def _reef(x, y):  # blue water with coral blobs
    for cx, cy, r, col in ((50, 150, 34, (240, 110, 80)), (128, 165, 42, (250, 175, 60)), (205, 148, 30, (225, 90, 150))):
        if (x - cx) ** 2 + (y - cy) ** 2 < r * r:
            return col
    if (x - 150) ** 2 // 4 + (y - 60) ** 2 < 90:  # a fish
        return (255, 220, 40)
    return (10, 70 + y // 3, 120 + y // 2)


def _starter(x, y):  # a glass jar of starter on a beige table
    if 88 <= x < 168 and 28 <= y < 176:
        if y >= 96:
            return (226, 206, 160) if (x * 13 + y * 7) % 41 else (255, 250, 240)
        return (205, 215, 222)
    return (238 - y // 8, 222 - y // 8, 188 - y // 10)


def _icon(x, y):  # 16x16 feed icon: orange square, white arcs
    d = x * x + (15 - y) ** 2
    return (255, 255, 255) if d < 9 or 36 < d < 64 or 100 < d < 144 else (242, 140, 40)


IMAGES = {  # url -> png bytes; every url is referenced (after resolution) by an HTML page below
    "https://news.example.com/img/river-hero.png": lambda: png(256, 192, _river),
    "https://blog.example.org/img/starter.png": lambda: png(256, 192, _starter),
    "https://cdn.example.net/assets/img/reef-01.png": lambda: png(256, 192, _reef),
    "https://www.example.net/icons/rss-16.png": lambda: png(16, 16, _icon),
}
# Photos the pages show, stored as image records as a browser-based crawl would (real JPEGs, made
# with Pillow from a per-URL pattern). One photo the pages reference is deliberately absent
# (ABSENT_PHOTO): the image stage reports it not_fetched (the local config does not fetch).
PHOTOS = (
    "https://news.example.com/img/millbrook-800.jpg", "https://news.example.com/img/millbrook-1600.jpg",
    "https://blog.example.org/posts/img/crumb.jpg", "https://blog.example.org/img/loaf-scored.jpg",
    "https://nachrichten.example.net/bilder/2024/teufelsmoor.jpg",
    "https://reise.example.com/media/radweg-travemuende-1280.jpg", "https://reise.example.com/media/salzhaff-1920.jpg",
    "https://journal.example.org/photos/2024/boulangerie-vitrine.jpg",
    "https://journal.example.org/photos/2024/brioche-pralines.jpg", "https://cdn.example.net/fotos/vivero-coral.jpg",
    "https://tech.example.net/ja/images/railway-bridge.jpg", "https://novosti.example.org/upload/taiga-gar-2048.jpg",
    "https://akhbar.example.com/media/2024/greenhouse.jpg", "https://www.example.org/immagini/biblioteca-saragozza.jpg",
)
ABSENT_PHOTO = "https://www.example.net/old/images/gull-point-1962.jpg"


def photo(url: str, w: int = 320, h: int = 240) -> bytes:
    """A deterministic JPEG for `url`: a two-colour gradient with a few discs."""
    import io

    from PIL import Image
    seed = hashlib.sha1(url.encode()).digest()
    a, b = seed[:3], seed[3:6]
    discs = [(seed[6 + 3 * k] * w // 256, seed[7 + 3 * k] * h // 256, 12 + seed[8 + 3 * k] % 40) for k in range(3)]

    def px(x, y):
        for cx, cy, r in discs:
            if (x - cx) ** 2 + (y - cy) ** 2 < r * r:
                return (255 - a[0], 255 - a[1], 255 - b[2])
        return tuple((a[c] * (w - x) + b[c] * x) // w for c in range(3))
    img = Image.frombytes("RGB", (w, h), bytes(v for y in range(h) for x in range(w) for v in px(x, y)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


GIF_1X1 = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


# ---------------------------------------------------------------- pages
def esc(s: str, attr: bool = False) -> str:
    return html.escape(s, quote=attr)


def fig(src, alt, cap, w=None, h=None, extra=""):
    size = f' width="{w}" height="{h}"' if w else ""
    return (f'<figure class="wp-block-image"><img src="{esc(src)}" alt="{esc(alt, True)}"{size}{extra}>'
            f'<figcaption>{esc(cap)}</figcaption></figure>')


def srcset_img(stem, ext, alt, widths=(480, 800, 1600), sizes="(max-width: 700px) 100vw, 700px"):
    ss = ", ".join(f"{stem}-{w}.{ext} {w}w" for w in widths)
    return f'<img src="{stem}-{widths[1]}.{ext}" srcset="{ss}" sizes="{sizes}" alt="{esc(alt, True)}" loading="lazy">'


def picture(stem, alt):
    return (f'<picture><source type="image/avif" srcset="{stem}.avif"><source type="image/webp" '
            f'srcset="{stem}.webp 1x, {stem}@2x.webp 2x"><img src="{stem}.jpg" alt="{esc(alt, True)}" width="1200" height="800"></picture>')


def _icon_data_uri():
    return "data:image/png;base64," + base64.b64encode(png(16, 16, _icon)).decode()


# Each page: url, article key, lang, charset, how declared, container, site name, media {after_para: html}, flags.
def pages():
    return [
        dict(url="https://news.example.com/2024/03/river-restoration-returns-salmon.html", key="river", lang="en",
             container="article", site="The Valley Courier", css=True,
             media={0: fig("/img/river-hero.png", "Shallow river with gravel banks and young willows",
                           "Volunteers counted forty-one redds on the upper Alder River in October.", 256, 192),
                    2: '<figure>' + srcset_img("/img/millbrook", "jpg", "The former mill pond at Millbrook, now a willow meadow")
                       + '<figcaption>The drained mill pond at Millbrook, planted with willows in 2022.</figcaption></figure>'}),
        dict(url="https://www.example.org/syndicated/alder-river-salmon-comeback", key="river", lang="en",
             kind="near_copy", container="div", site="Example Daily Digest",
             media={0: fig("https://news.example.com/img/river-hero.png", "River with gravel banks",
                           "The upper Alder River. Photo: The Valley Courier", 256, 192),
                    2: '<figure><img src="https://news.example.com/img/millbrook-800.jpg" alt="The former mill pond">'
                       '<figcaption>The drained mill pond at Millbrook, planted with willows in 2022.</figcaption></figure>'}),
        dict(url="https://blog.example.org/posts/sourdough-at-altitude", key="sourdough", lang="en", container="div",
             site="Crumb & Crust", content_encoding="gzip",
             media={0: '<p><img src="/static/img/placeholder.gif" data-src="../img/starter.png" class="lazyload" '
                       'alt="A jar of bubbly sourdough starter" width="256" height="192"></p>',
                    2: picture("img/crumb", "Open crumb of a sourdough loaf baked at altitude"),
                    4: fig("../img/loaf-scored.jpg", "Scored loaf before baking", "A shaped loaf, scored and ready for the pot.",
                           extra=' loading="lazy"')}),
        dict(url="https://www.example.net/old/lighthouse-keepers.htm", key="lighthouse", lang="en", container="bare",
             site="Coastal Heritage Pages", canonical=False,
             media={1: '<img src="images/gull-point-1962.jpg" alt="Gull Point lighthouse in 1962" width="400" height="300">'
                       '<br><i>Gull Point light, photographed in 1962.</i>',
                    3: f'<img src="{_icon_data_uri()}" alt="Map marker" width="16" height="16"> '
                       '<i>Wreck site of November 1962, south-west of the tower.</i>'}),
        dict(url="https://nachrichten.example.net/wissen/moore-als-klimaschuetzer.html", key="moor", lang="de",
             charset="windows-1252", declared="meta", container="article", site="Nordwest Nachrichten",
             media={0: fig("/bilder/2024/teufelsmoor.jpg", "Wiedervernässte Moorfläche mit Wollgras",
                           "Wollgras auf einer wiedervernässten Fläche im Teufelsmoor. Foto: K. Meyer", 1200, 675)}),
        dict(url="https://reise.example.com/de/radtouren/ostsee-luebeck-rostock", key="ostsee", lang="de",
             container="div", site="Unterwegs Reisemagazin",
             media={1: f'<img src="{GIF_1X1}" data-src="/media/radweg-travemuende-1280.jpg" data-srcset="/media/radweg-travemuende-640.jpg 640w, '
                       '/media/radweg-travemuende-1280.jpg 1280w" class="lazy" alt="Radweg an der Trave bei Travemünde">',
                    3: '<figure>' + srcset_img("/media/salzhaff", "jpg", "Salzhaff bei Rerik", (640, 1280, 1920))
                       + '<figcaption>Blick vom Schmiedeberg über das Salzhaff.</figcaption></figure>'}),
        dict(url="https://journal.example.org/culture/boulangerie-de-quartier", key="boulangerie", lang="fr",
             container="article", site="Le Journal des Quartiers", chunked=True,
             media={0: '<figure>' + picture("/photos/2024/boulangerie-vitrine", "La vitrine éclairée de la boulangerie Martin à l'aube")
                       + '<figcaption>La boulangerie Martin, rue Saint-Georges, à six heures du matin.</figcaption></figure>',
                    3: fig("/photos/2024/brioche-pralines.jpg", "Brioche aux pralines roses", "La brioche aux pralines, spécialité lyonnaise.", 800, 600)}),
        dict(url="https://revista.example.com/ciencia/arrecifes-de-coral-verano-record", key="arrecifes", lang="es",
             container="div", site="Revista Ciencia Hoy", base="https://cdn.example.net/assets/", logo="/img/logo-revista.png",
             media={0: fig("img/reef-01.png", "Colonias de coral blanqueadas frente a Puerto Morelos",
                           "Corales afectados por el blanqueamiento en la costa de Quintana Roo.", 256, 192),
                    3: fig("../fotos/vivero-coral.jpg", "Buzo trabajando en un vivero de coral", "Un vivero de coral en aguas profundas.", 1024, 683)}),
        dict(url="https://tech.example.net/ja/articles/local-railway-100", key="tetsudo", lang="ja", charset="shift_jis",
             declared="http", container="article", site="まちづくり通信",
             media={3: fig("/ja/images/railway-bridge.jpg", "渓谷の鉄橋を渡る観光列車", "紅葉の渓谷を渡る観光列車", 960, 640)}),
        dict(url="https://novosti.example.org/ru/nauka/taiga-posle-pozharov", key="taiga", lang="ru", charset="koi8-r",
             declared="http", container="div", site="Новости науки",
             media={1: '<div class="photo">' + srcset_img("/upload/taiga-gar", "jpg", "Молодые березы на гари", (640, 1024, 2048))
                       + '<p class="photo-caption">Поросль березы на гари через два года после пожара.</p></div>'}),
        dict(url="https://akhbar.example.com/ar/science/desert-farming", key="sahra", lang="ar", container="article",
             site="أخبار اليوم",
             media={1: fig("/media/2024/greenhouse.jpg", "بيوت محمية في الصحراء", "بيوت محمية تعمل بالطاقة الشمسية جنوب المدينة.", 1200, 800)}),
        dict(url="https://www.example.org/it/cultura/biblioteche-di-quartiere", key="biblioteche", lang="it",
             container="article", site="Città Aperta",
             media={2: fig("/immagini/biblioteca-saragozza.jpg", "Sala lettura con studenti", "La sala lettura della biblioteca di via Saragozza.", 1000, 667)}),
        dict(url="https://news.example.com/2024/03/old-story.html", key="notfound", lang="en", container="div",
             site="The Valley Courier", kind="404", status=404, canonical=False, media={}),
    ]


def _ui(lang):
    return dict(zip(UI_KEYS, UI[lang]))


def render(p: dict) -> str:
    u, lang = _ui(p["lang"]), p["lang"]
    title, author, date, paras = ARTICLES[p["key"]]
    if p.get("kind") == "near_copy":
        paras = tuple(_edit(t) for t in paras)
    host = urlsplit(p["url"]).netloc
    root = (lambda path: f"https://{host}{path}") if p.get("base") else (lambda path: path)
    site, charset, cont = p["site"], p.get("charset", "utf-8"), p["container"]
    head = [f'<!DOCTYPE html>\n<html lang="{lang}"' + (' dir="rtl"' if lang == "ar" else "") + ">", "<head>"]
    if charset == "utf-8":
        head.append('<meta charset="utf-8">')
    elif p.get("declared") == "meta":
        head.append(f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">')
    head += ['<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)} | {esc(site)}</title>",
             f'<meta name="description" content="{esc(paras[0][:150], True)}">',
             f'<meta property="og:title" content="{esc(title, True)}">', '<meta property="og:type" content="article">']
    if p.get("base"):
        head.append(f'<base href="{p["base"]}">')
    if p.get("canonical", True):
        head.append(f'<link rel="canonical" href="{p["url"]}">')
    head += [f'<link rel="stylesheet" href="{root("/static/css/site.css")}">', f'<link rel="icon" href="{root("/favicon.ico")}">',
             "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}gtag('js',new Date());</script>",
             "</head>"]
    nav = [(n, root(f"/{i}/" if i else "/")) for i, n in enumerate(u["nav"].split("|"))]
    links = [(n, root(f"/info/{i}")) for i, n in enumerate(u["links"].split("|"))]
    rel = [(t, root(f"/related/{i}.html")) for i, t in enumerate(u["rel"].split("~"), 1)]
    logo = f'<img src="{p.get("logo") or root("/static/img/logo.svg")}" alt="{esc(site, True)}" width="180" height="40">'
    cookie = (f'<div id="cookie-banner" class="cookie-consent" role="dialog"><p>{esc(u["cookie"])} '
              f'<a href="{root("/info/2")}">{esc(links[2][0])}</a></p><button class="cc-accept">{esc(u["accept"])}</button> '
              f'<button class="cc-settings">{esc(u["settings"])}</button></div>')
    share_url = esc(f"https://social.example.com/share?url={quote(p['url'], safe='')}", True)
    share = (f'<div class="share-buttons"><span>{esc(u["share"])}:</span> <a href="{share_url}" rel="nofollow">'
             f'<img src="{root("/static/icons/share-16.png")}" width="16" height="16" alt="">Social</a> '
             f'<a href="mailto:?subject={quote(title)}">E-mail</a> <button class="copy-link">Link</button></div>')
    ad = (f'<div class="ad-slot" data-ad-unit="sidebar-300x250"><span class="ad-label">{esc(u["ad"])}</span>'
          f'<a href="https://ads.example.net/click?c=4711&amp;s={host}" rel="sponsored nofollow">'
          f'<img src="https://ads.example.net/creatives/300x250-travel.jpg" width="300" height="250" alt="{esc(u["ad"], True)}"></a></div>')
    pixel = (f'<img src="https://pixel.example.net/collect?sid={host}&amp;ev=pageview" width="1" height="1" alt="" '
             f'style="position:absolute;left:-9999px">')
    comments = ""
    if p["key"] in COMMENTS and p.get("kind") != "near_copy":
        items = "".join(f'<li class="comment"><b class="comment-author">{esc(a)}</b><p>{esc(t)}</p>'
                        f'<a href="#reply" class="reply">Reply</a></li>' for a, t in COMMENTS[p["key"]])
        comments = (f'<h2>{esc(u["comments"])} ({len(COMMENTS[p["key"]])})</h2><ol class="comment-list">{items}</ol>'
                    '<form class="comment-form" action="/comments" method="post"><textarea name="c"></textarea>'
                    '<button>Post</button></form>')
    body = []
    for i, t in enumerate(paras):
        body.append(esc(t) if cont == "bare" else f"<p>{esc(t)}</p>")
        if i in p["media"]:
            body.append(p["media"][i])
    byline = f'{esc(u["by"])} {esc(author)}, {date}' if author else ""
    if cont == "bare":  # table layout, no semantic containers at all
        out = head + ['<body bgcolor="#ffffff">', cookie,
                      f'<table width="100%" cellpadding="4"><tr><td>{logo} <img src="/icons/rss-16.png" width="16" height="16" alt="RSS"></td><td align="right">'
                      + " | ".join(f'<a href="{h}">{esc(n)}</a>' for n, h in nav) + "</td></tr></table>",
                      '<table width="100%" cellpadding="8"><tr><td width="70%" valign="top">',
                      f'<font size="5"><b>{esc(title)}</b></font><br><font size="2" color="#666666">{byline}</font><br><br>',
                      '<font face="Georgia" size="3">' + "<br><br>\n".join(body) + "</font><br><br>" + share,
                      '</td><td width="30%" valign="top" bgcolor="#eeeeee">', f"<b>{esc(u['related'])}</b><br>"
                      + "<br>".join(f'<a href="{h}">{esc(t)}</a>' for t, h in rel) + "<br><br>" + ad, "</td></tr></table>",
                      '<table width="100%"><tr><td align="center"><font size="1">'
                      + " | ".join(f'<a href="{h}">{esc(n)}</a>' for n, h in links)
                      + f"<br>&copy; 2009 {esc(site)}. {esc(u['rights'])}</font></td></tr></table>", "</body>", "</html>"]
        return "\n".join(out) + "\n"
    related = (f'<div class="related"><h3>{esc(u["related"])}</h3><ul>'
               + "".join(f'<li><a href="{h}">{esc(t)}</a></li>' for t, h in rel) + "</ul></div>")
    newsletter = (f'<div class="newsletter"><p>{esc(u["newsletter"])}</p><form action="{root("/newsletter")}">'
                  '<input type="email" name="email"><button>OK</button></form></div>')
    foot_links = "".join(f'<li><a href="{h}">{esc(n)}</a></li>' for n, h in links)
    copyright_ = f"&copy; 2024 {esc(site)}. {esc(u['rights'])}"
    menu = "".join(f'<li><a href="{h}">{esc(n)}</a></li>' for n, h in nav)
    if cont == "article":
        out = head + ['<body class="single-post">', cookie,
                      f'<header class="site-header"><a href="{root("/")}" class="logo">{logo}</a>'
                      f'<nav class="main-nav" aria-label="Main"><ul>{menu}</ul></nav></header>',
                      '<main id="main">', '<article class="post">',
                      f'<header class="entry-header"><h1>{esc(title)}</h1><p class="byline">{byline}</p></header>',
                      '<div class="entry-content">', *body, "</div>", share, "</article>",
                      f'<section id="comments" class="comments">{comments}</section>' if comments else "",
                      "</main>", f'<aside class="sidebar">{related}{ad}{newsletter}</aside>',
                      f'<footer class="site-footer"><ul class="footer-links">{foot_links}</ul><p>{copyright_}</p></footer>',
                      pixel, f'<script src="{root("/static/js/app.js")}" defer></script>', "</body>", "</html>"]
    else:  # plain <div class="content">
        out = head + ['<body>', cookie,
                      f'<div class="header"><div class="logo"><a href="{root("/")}">{logo}</a></div>'
                      f'<ul class="menu">{menu}</ul><form class="search" action="{root("/search")}"><input name="q"></form></div>',
                      '<div id="wrapper">', '<div class="content">', f"<h1>{esc(title)}</h1>",
                      f'<div class="meta">{byline}</div>' if byline else "", *body, share if byline else "", "</div>",
                      f'<div id="comments" class="comments">{comments}</div>' if comments else "",
                      f'<div class="sidebar">{related}{ad}{newsletter}</div>', "</div>",
                      f'<div class="footer"><ul>{foot_links}</ul><p>{copyright_}</p></div>', pixel, "</body>", "</html>"]
    return "\n".join(x for x in out if x) + "\n"


def _edit(t: str) -> str:
    for a, b in NEAR_COPY_EDITS:
        t = t.replace(a, b)
    return t


# ---------------------------------------------------------------- WARC writing
ORDER = ["WARC-Type", "WARC-Date", "WARC-Record-ID", "Content-Length", "Content-Type", "WARC-Warcinfo-ID",
         "WARC-Concurrent-To", "WARC-IP-Address", "WARC-Refers-To", "WARC-Target-URI", "WARC-Profile",
         "WARC-Refers-To-Target-URI", "WARC-Refers-To-Date", "WARC-Payload-Digest", "WARC-Block-Digest",
         "WARC-Identified-Payload-Type", "WARC-Filename"]


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def warc_date(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(t: dt.datetime) -> str:
    return format_datetime(t.replace(microsecond=0), usegmt=True)  # locale-independent


class _Writer:
    def __init__(self):
        self.members: list[bytes] = []
        self.counts: dict[str, int] = {}
        self.n = 0
        self.clock = T0
        self.info_id = None

    def new_id(self, kind: str, uri: str) -> str:
        self.n += 1
        return f"<urn:uuid:{uuid.uuid5(NS, f'{self.n}|{kind}|{uri}')}>"

    def record(self, kind, block: bytes, ctype: str, uri=None, date=None, payload=None, **fields) -> str:
        rid = self.new_id(kind, uri or "")
        h = {"WARC-Type": kind, "WARC-Date": warc_date(date or self.clock), "WARC-Record-ID": rid,
             "Content-Length": str(len(block)), "Content-Type": ctype}
        if self.info_id:
            h["WARC-Warcinfo-ID"] = self.info_id
        if uri:
            h["WARC-Target-URI"] = uri
        if payload is not None:
            h["WARC-Payload-Digest"] = sha1_b32(payload)
        h["WARC-Block-Digest"] = sha1_b32(block)
        h.update({k.replace("_", "-"): v for k, v in fields.items()})
        head = "WARC/1.0\r\n" + "".join(f"{k}: {h[k]}\r\n" for k in sorted(h, key=ORDER.index)) + "\r\n"
        self.members.append(gzip.compress(head.encode("utf-8") + block + b"\r\n\r\n", compresslevel=9, mtime=0))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return rid

    def fetch(self, url: str, status: str, headers: list, body: bytes, ptype: str, lang="en", ip="192.0.2.10"):
        """request + response; returns (response id, payload bytes, response date)."""
        self.clock += dt.timedelta(seconds=3 + self.n % 7)
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        req = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: {UA}\r\n"
               f"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
               f"Accept-Language: {lang},en-US;q=0.7,en;q=0.3\r\nAccept-Encoding: br,gzip\r\nConnection: Keep-Alive\r\n\r\n")
        req_id = self.record("request", req.encode("ascii"), "application/http; msgtype=request", uri=url,
                             WARC_IP_Address=ip)
        resp_date = self.clock + dt.timedelta(milliseconds=400)
        hdrs = [("Date", http_date(resp_date))] + headers
        block = (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n").encode("latin-1") + body
        rid = self.record("response", block, "application/http; msgtype=response", uri=url, date=resp_date,
                          payload=body, WARC_Concurrent_To=req_id, WARC_IP_Address=ip,
                          WARC_Identified_Payload_Type=ptype)
        return rid, body, resp_date


def _chunked(data: bytes, size: int = 2048) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + b"0\r\n\r\n"


CSS = b"""/* site.css */
body{font:16px/1.6 Georgia,serif;color:#222;margin:0}
.site-header,.header{display:flex;justify-content:space-between;padding:12px 24px;border-bottom:1px solid #ddd}
.main-nav ul,.menu{list-style:none;display:flex;gap:16px}
#main{max-width:720px;margin:0 auto}.sidebar{width:300px}
.cookie-consent{position:fixed;bottom:0;left:0;right:0;background:#111;color:#fff;padding:16px;z-index:1000}
figure img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#666}
.lazyload{opacity:0;transition:opacity .3s}.ad-slot{border:1px dashed #ccc;padding:8px}
"""


def write_sample_warc(path) -> dict:
    """Write the sample WARC to ``path`` (atomically) and return its manifest."""
    path = Path(path)
    w = _Writer()
    info = ("software: interleaf flows.make_sample\r\nhostname: sample.interleaf.example.org\r\n"
            "operator: interleaf (synthetic sample, not Common Crawl data)\r\nisPartOf: interleaf-sample\r\n"
            "description: Synthetic sample crawl of reserved example.* hosts\r\nformat: WARC File Format 1.0\r\n"
            "conformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/\r\n"
            "robots: checked via crawler-commons\r\n").encode()
    w.info_id = w.record("warcinfo", info, "application/warc-fields", WARC_Filename=WARC_NAME)
    html_pages, image_records, photo_records, other = [], [], [], []
    specs = pages()
    river = specs[0]["url"]

    # a 301 from the short link to the river story
    w.fetch("http://news.example.com/river", "301 Moved Permanently",
            [("Server", "nginx/1.24.0"), ("Location", river), ("Content-Type", "text/html"), ("Content-Length", "0")],
            b"", "text/html")
    first = None
    for i, p in enumerate(specs):
        charset, lang = p.get("charset", "utf-8"), p["lang"]
        doc = render(p).encode(charset)  # strict: the page must be representable in its declared charset
        label = {"utf-8": "utf-8", "shift_jis": "Shift_JIS", "koi8-r": "KOI8-R"}.get(charset)
        ctype = "text/html" if p.get("declared") == "meta" else f"text/html; charset={label}"
        hdrs = [("Server", ("nginx/1.24.0", "Apache/2.4.57 (Debian)", "cloudflare")[i % 3]), ("Content-Type", ctype)]
        body = doc
        if p.get("content_encoding") == "gzip":
            body = gzip.compress(doc, compresslevel=6, mtime=0)
            hdrs += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"), ("Content-Length", str(len(body)))]
        elif p.get("chunked"):
            body = _chunked(doc)
            hdrs += [("Transfer-Encoding", "chunked")]
        else:
            hdrs += [("Content-Length", str(len(body)))]
        hdrs += [("Cache-Control", "max-age=300"), ("Set-Cookie", f"sid={hashlib.sha1(p['url'].encode()).hexdigest()[:16]}; Path=/; HttpOnly")]
        status = "404 Not Found" if p.get("status") == 404 else "200 OK"
        ip = f"192.0.2.{10 + i}" if i % 2 else f"198.51.100.{20 + i}"
        rid, payload, rdate = w.fetch(p["url"], status, hdrs, body, "text/html", lang=lang, ip=ip)
        title, _, _, paras = ARTICLES[p["key"]]
        text = " ".join(_edit(t) if p.get("kind") == "near_copy" else t for t in paras)
        html_pages.append(dict(url=p["url"], lang=lang, charset=charset, charset_declared=p.get("declared", "both") if charset != "utf-8" else "both",
                               kind=p.get("kind", "article"), status=p.get("status", 200), title=title,
                               container=p["container"], canonical=p.get("canonical", True),
                               base_href=p.get("base"), content_encoding=p.get("content_encoding"),
                               transfer_encoding="chunked" if p.get("chunked") else None,
                               words=len(text.split()), chars=len(text), record_id=rid))
        if i == 0:
            first = (rid, payload, rdate, hdrs)
            w.record("metadata", (f"fetchTimeMs: 412\r\ncharset-detected: UTF-8\r\n"
                                  f'languages-cld2: {{"reliable":true,"text-bytes":{len(text)},"languages":[{{"code":"en","code-iso-639-3":"eng","text-covered":0.97,"score":981.0,"name":"ENGLISH"}}]}}\r\n').encode(),
                     "application/warc-fields", uri=p["url"], date=rdate, WARC_Concurrent_To=rid)
            w.fetch("https://news.example.com/static/css/site.css", "200 OK",
                    [("Server", "nginx/1.24.0"), ("Content-Type", "text/css"), ("Content-Length", str(len(CSS)))], CSS, "text/css")
            comments = json.dumps({"article": "river-restoration-returns-salmon", "total": 2,
                                   "comments": [{"id": k + 1, "author": a, "text": t} for k, (a, t) in enumerate(COMMENTS["river"])]},
                                  ensure_ascii=False, sort_keys=True).encode()
            api = "https://news.example.com/api/comments?article=river-restoration-returns-salmon"
            w.fetch(api, "200 OK", [("Server", "nginx/1.24.0"), ("Content-Type", "application/json; charset=utf-8"),
                                    ("Content-Length", str(len(comments)))], comments, "application/json")
            other += ["https://news.example.com/static/css/site.css", api]
    for url, make in IMAGES.items():
        data = make()
        w.fetch(url, "200 OK", [("Server", "cloudflare"), ("Content-Type", "image/png"), ("Content-Length", str(len(data))),
                                ("Cache-Control", "public, max-age=31536000")], data, "image/png", ip="203.0.113.7")
        image_records.append(url)
    for url in PHOTOS:
        data = photo(url)
        w.fetch(url, "200 OK", [("Server", "cloudflare"), ("Content-Type", "image/jpeg"), ("Content-Length", str(len(data))),
                                ("Cache-Control", "public, max-age=31536000")], data, "image/jpeg", ip="203.0.113.7")
        photo_records.append(url)
    # a week later the river story is fetched again, unchanged: a revisit record (headers only)
    rid, payload, rdate, hdrs = first
    w.clock = rdate + dt.timedelta(days=7)
    req_id = w.record("request", f"GET {urlsplit(river).path} HTTP/1.1\r\nHost: news.example.com\r\nUser-Agent: {UA}\r\n\r\n".encode(),
                      "application/http; msgtype=request", uri=river, WARC_IP_Address="198.51.100.20")
    head = (f"HTTP/1.1 200 OK\r\nDate: {http_date(w.clock)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n").encode("latin-1")
    w.record("revisit", head, "application/http; msgtype=response", uri=river, payload=payload,
             WARC_Concurrent_To=req_id, WARC_Profile=REVISIT_PROFILE, WARC_Refers_To=rid,
             WARC_Refers_To_Target_URI=river, WARC_Refers_To_Date=warc_date(rdate), WARC_IP_Address="198.51.100.20")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(b"".join(w.members))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    near = next(p["url"] for p in specs if p.get("kind") == "near_copy")
    return dict(path=str(path), records=dict(w.counts), html_pages=html_pages, image_records=image_records,
                photo_records=photo_records, absent_image=ABSENT_PHOTO, other_records=other, near_copy_of=[river, near], revisit_of=river,
                redirect=["http://news.example.com/river", river],
                sha1=hashlib.sha1(path.read_bytes()).hexdigest())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".cache/sample/sample.warc.gz")
    ap.add_argument("--manifest", help="also write the manifest as JSON here")
    a = ap.parse_args(argv)
    m = write_sample_warc(a.out)
    if a.manifest:
        Path(a.manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(a.manifest).write_text(json.dumps(m, ensure_ascii=False, indent=1))
    langs = sorted({p["lang"] for p in m["html_pages"] if p["lang"]})
    print(f"wrote {m['path']}: {sum(m['records'].values())} records {m['records']}, "
          f"{len(m['html_pages'])} HTML responses, languages {langs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
