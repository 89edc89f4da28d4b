# Produces the tokenizer goldens in this folder with Hugging Face `tokenizers`
# (run once on the device machine; see README.md here):
#   shakespeare_all.u16  ids of the whole tests/fixtures/data/tinyshakespeare.txt
#   shakespeare_val.u16  ids of its val split text[int(0.9*len(text)):]
#                        (both uint16 little-endian, ids < 2048)
#   extra_vectors.json   [{"text", "ids"}] for edge-case strings (whitespace,
#                        contractions, Unicode categories, added tokens, a code
#                        point sweep)
import json, struct, sys, time, unicodedata
from tokenizers import Tokenizer, __version__ as tok_version

root, out = sys.argv[1], sys.argv[2]
tok = Tokenizer.from_file(f"{root}/tests/fixtures/models/mamba1-tiny/tokenizer.json")
text = open(f"{root}/tests/fixtures/data/tinyshakespeare.txt", encoding="utf-8").read()

def save_u16(name, ids):
    assert max(ids) < 65536
    with open(f"{out}/{name}", "wb") as f:
        f.write(struct.pack(f"<{len(ids)}H", *ids))

t0 = time.time()
all_ids = tok.encode(text).ids
t1 = time.time()
val_ids = tok.encode(text[int(0.9 * len(text)):]).ids
save_u16("shakespeare_all.u16", all_ids)
save_u16("shakespeare_val.u16", val_ids)

strings = [
    "a  b", "a \n b", "\n\n\n", "   ", " \t ", "x\u00a0\u00a0y", "line\r\nnext\r\n",
    "hello   ", "   hello", " ", "\t", "a\u3000b\u2028c\u0085d\u200be",
    "'S 's I'm we'll they'd you've we're can't '' ''s 'x 'll'", "don't DON'T",
    "\uff11\uff12\uff13 \u216b \u00b2\u00b3 \u0661\u0662 4\u00bd",
    "e\u0301 n\u0303 \u0921\u093c\u093f \u0939\u093f\u0928\u094d\u0926\u0940",
    "\u4e2d\u6587\u5b57 \u65e5\u672c\u8a9e\u3067\u3059 \ud55c\uad6d\uc5b4",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "\U0001F468\u200d\U0001F469\u200d\U0001F467 \U0001F1EB\U0001F1F7 \u2764\ufe0f",
    "a<|endoftext|>b", " <|endoftext|> ", "<|endoftext|><|endoftext|>",
    "<|endoftext|", "<|ENDOFTEXT|>", "x <|endoftext|>\n\nROMEO:",
    "...!!!???---", "$100.00 + 3,000", "foo_bar(baz)", "\u00ff\u0100\ud7ff\ue000\uffff",
    "\U00010000\U0001d400\U00020000\U0010ffff", "A\u0000B\u0001\u007f",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n",
]
# Code point sweep: every 7th scalar value up to U+30000, in chunks, with a
# few ASCII separators so letters/numbers/others meet spaces in all ways.
cps = [c for c in range(1, 0x30000, 7) if not 0xD800 <= c <= 0xDFFF]
seps = [" ", "  ", "\n", "a", "1", "'s", " 1", " a", ""]
chunk = []
for i, c in enumerate(cps):
    chunk.append(chr(c))
    chunk.append(seps[(i * 5) % len(seps)] if i % 3 == 0 else "")
    if len(chunk) >= 400:
        strings.append("".join(chunk)); chunk = []
if chunk: strings.append("".join(chunk))
vectors = [{"text": s, "ids": tok.encode(s).ids} for s in strings]
json.dump(vectors, open(f"{out}/extra_vectors.json", "w"), ensure_ascii=True)
print("tokenizers", tok_version, "python", sys.version.split()[0],
      "unicodedata", unicodedata.unidata_version)
print("all", len(all_ids), "val", len(val_ids), "encode_all_s", round(t1 - t0, 3),
      "vectors", len(vectors))
