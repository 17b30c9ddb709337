"""100 varied sentences for checking the converted all-MiniLM-L6-v2 against its reference.

Lengths from one word to a long paragraph; punctuation, numbers, dates, URLs; words of
other languages (accents, Vietnamese tone marks, Cyrillic, Greek, Chinese, Japanese, Arabic,
Devanagari); code in several languages; odd whitespace and symbols. Korean is not among them:
llama.cpp's WordPiece drops Hangul vowels (test_minilm_reference.py says so in a test of its own).
"""

from __future__ import annotations

LONG = (
    "The committee met on a grey Tuesday morning to review the quarterly figures, and although the "
    "chair opened with a reassuring summary, the discussion soon turned to the delayed shipments, the "
    "rising cost of raw materials, the two suppliers who had quietly raised their prices, and the question "
    "of whether the new warehouse in the north should open in spring as planned or wait another year; by "
    "noon nobody had changed their mind, the coffee had run out, and the only decision recorded in the "
    "minutes was to meet again the following week with better numbers."
)

SENTENCES: list[str] = [
    # short
    "Hi.",
    "Yes",
    "Thanks!",
    "Why?",
    "Rain again.",
    "OK, fine.",
    "cat",
    "A dog barked.",
    # everyday sentences of several lengths
    "The train to Edinburgh leaves at a quarter past nine.",
    "She forgot her umbrella, so she bought another one at the station.",
    "Please send me the report before Friday afternoon.",
    "My grandmother grows tomatoes, beans and far too many courgettes.",
    "The museum is closed on Mondays except during school holidays.",
    "He learned to play the violin at forty and now performs in a small orchestra.",
    "Water boils at a lower temperature on top of a high mountain.",
    "The library extended its opening hours for the exam period.",
    "After the storm, the fishermen repaired their nets on the beach.",
    "Could you turn the music down a little, please?",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Our flight was delayed by three hours because of fog in Amsterdam.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The treaty was signed in 1648 and ended thirty years of war.",
    "Most of the bugs were found by the users rather than by the tests.",
    "I have never seen so many stars as on that night in the desert.",
    "The bakery on the corner sells the best croissants in town.",
    "A sudden gust of wind blew the papers off the desk and out of the window.",
    "Interest rates rose for the third time this year.",
    "The children built a snowman with a carrot for a nose.",
    LONG,
    LONG.upper(),
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
    "arrows of outrageous fortune, or to take arms against a sea of troubles.",
    # punctuation and case
    "Wait... what?! No -- that can't be right; check it again.",
    "\"Quoted,\" she said, 'and single-quoted', (parenthesised) [bracketed] {braced}.",
    "e.g. i.e. etc. vs. Dr. Smith & Mr. Jones @ 5 p.m.",
    "ALL CAPS SENTENCES ARE HARD TO READ FOR LONG.",
    "mIxEd CaSe TeXt StIlL MeAnS tHe SaMe.",
    "semi;colons:colons,commas.periods!bangs?questions",
    "Hyphen-ated, slash/separated, under_scored and dot.separated words.",
    "~!@#$%^&*()_+`-={}|[]\\:\";'<>?,./",
    "…and then — unexpectedly — “smart quotes” appeared «here» too.",
    # numbers
    "3.14159 is close to pi, and 2.71828 is close to e.",
    "The population grew from 1,234,567 to 2,345,678 in ten years.",
    "Call +44 20 7946 0958 or 555-0199 between 09:00 and 17:30.",
    "On 2024-02-29 the temperature was -12.5 °C at 06:45.",
    "Version 10.2.3-rc1 fixed issues #4521 and #4533.",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    "The invoice total is $1,299.99 (VAT 20%: $216.67).",
    "0x1F, 0b1010, 1e-9 and 6.022e23 are all numbers.",
    "In 1969, 600 million people watched Apollo 11 land.",
    # URLs, e-mail, identifiers
    "See https://docs.python.org/3/reference/datamodel.html#object.__init__ for details.",
    "Write to support@example.com or visit www.example.org/help?q=login&lang=en.",
    "The file is at /usr/local/lib/python3.11/site-packages/numpy/__init__.py.",
    "UUID 123e4567-e89b-12d3-a456-426614174000 identifies the order.",
    # other languages
    "Café, crème brûlée and a croque-monsieur, s'il vous plaît.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Mañana iremos a la playa si no llueve, ¿verdad?",
    "Ich möchte ein Glas Wasser und ein Stück Käsekuchen.",
    "Naïve coöperation at the façade of the Hôtel de Ville.",
    "Привет, как дела? Всё хорошо, спасибо.",
    "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "我喜欢在周末去公园散步。",
    "東京は日本の首都です。",
    "Tiếng Việt có sáu thanh điệu và rất nhiều dấu.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "नमस्ते, आप कैसे हैं?",
    "Smörgåsbord, fjörður and Ærø are Nordic words.",
    "Zażółć gęślą jaźń to polskie zdanie testowe.",
    "São Paulo é a maior cidade do Brasil.",
    "İstanbul'da çay içmek çok güzeldir.",
    "Schadenfreude, Weltanschauung and Zeitgeist came into English from German.",
    "The word 'résumé' is sometimes written 'resume'.",
    # code
    "def add(a: int, b: int) -> int:\n    return a + b",
    "for (int i = 0; i < n; ++i) { sum += values[i]; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;",
    '{"id": 42, "tags": ["a", "b"], "active": true, "score": 9.5}',
    "git commit -m 'fix: handle empty input' && git push origin main",
    "const greet = (name) => `Hello, ${name}!`;",
    "import numpy as np; x = np.linspace(0, 1, 11); print(x.mean())",
    r"^\d{3}-\d{2}-\d{4}$ matches a US social security number.",
    '<div class="card"><p>Hello <b>world</b></p></div>',
    'fn main() { println!("{}", vec![1, 2, 3].iter().sum::<i32>()); }',
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "try:\n    value = cache[key]\nexcept KeyError:\n    value = compute(key)",
    "CREATE TABLE t (id BIGINT PRIMARY KEY, body TEXT NOT NULL);",
    "kubectl get pods -n kube-system -o wide | grep -v Running",
    "assert sorted(items, key=lambda item: item.priority)[0].name == 'urgent'",
    # whitespace and symbols
    "  leading and trailing spaces  ",
    "tabs\tbetween\twords",
    "line one\nline two\n\nline four",
    "Emoji 🙂 and symbols ★ ☂ → ∞ are here.",
    "≤ ≥ ≠ ± × ÷ √ ∑ ∫ are mathematical symbols.",
    "The price rose by 5 % — or was it 5‰?",
    # questions of the kind a retrieval system gets
    "How do I reset my password?",
    "What is the capital of Australia?",
    "Which Python statement handles exceptions?",
    "When does the next bus to the airport leave?",
    "How much does a return ticket cost?",
    "Can decorators take arguments in Python?",
    "What does the yield keyword do in a function?",
    "Is the shop open on public holidays?",
]
