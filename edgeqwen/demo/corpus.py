"""Build the demo corpus the project ships, from Python's own documentation.

Why this text: it is license-clean (the Python Software Foundation License
permits redistribution with its notice, which ships beside the corpus), it is
already on every machine that runs Python, and it is real English prose with
code, so perplexity and drift figures measured on it mean something.

The corpus has two kinds of records, one JSON object a line:
  {"id": ..., "kind": "doc",  "text": ...}              plain documentation
  {"id": ..., "kind": "chat", "messages": [user, assistant]}  question/answer
The chat records teach the demo model Qwen's chat format, so `edgeqwen run`
on the demo bundle answers a question instead of rambling.

Records are split into train and held-out by a hash of their id, so the split
is stable when the corpus grows.

    python -m edgeqwen.demo.corpus --out edgeqwen/assets/corpus
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

# Standard-library modules whose docstrings are written as prose.
DOCUMENTED_MODULES = (
    "abc argparse array asyncio base64 bisect calendar collections contextlib copy csv dataclasses "
    "datetime decimal difflib enum fnmatch fractions functools glob gzip hashlib heapq hmac html "
    "http.client inspect io ipaddress itertools json logging math mimetypes operator os pathlib pickle "
    "pprint queue random re sched secrets shlex shutil signal socket sqlite3 statistics string struct "
    "subprocess tarfile tempfile textwrap threading time timeit tokenize traceback typing unittest "
    "urllib.parse uuid warnings weakref zipfile zlib email.message xml.etree.ElementTree "
    "concurrent.futures multiprocessing configparser codecs locale gettext selectors urllib.request "
    "http.server smtplib ftplib imaplib xmlrpc.client ast dis pdb cProfile trace doctest numbers types "
    "importlib pkgutil runpy platform sysconfig filecmp fileinput linecache netrc plistlib mailbox "
    "graphlib optparse getopt reprlib symtable compileall py_compile zipapp webbrowser cmd code shelve "
    "bz2 lzma nntplib quopri wave colorsys"
).split()

HELDOUT_PERCENT = 8
MAX_ANSWER_CHARS = 700


def unwrap(text: str) -> str:
    """Join hard-wrapped prose lines; keep indented blocks (code, grammar) as they are."""
    # Headings are underlined with runs of *, = or -: drop the underline, keep the heading.
    text = re.sub(r"^[*=~-]{3,}$", "", text, flags=re.MULTILINE)
    paragraphs = re.split(r"\n\s*\n", text.strip())
    out = []
    for para in paragraphs:
        lines = para.splitlines()
        if any(line.startswith((" ", "\t")) for line in lines):
            out.append(para.rstrip())
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def first_paragraphs(text: str, limit: int = MAX_ANSWER_CHARS) -> str:
    """The leading prose of a text, cut at a paragraph boundary near `limit` characters."""
    answer = ""
    for para in text.split("\n\n"):
        if answer and len(answer) + len(para) > limit:
            break
        answer = f"{answer}\n\n{para}" if answer else para
    return answer[: limit * 2].strip()


def topic_records():
    import pydoc_data.topics

    for name, raw in sorted(pydoc_data.topics.topics.items()):
        text = unwrap(raw)
        yield {"id": f"topic:{name}", "kind": "doc", "text": text}
        title = text.split("\n", 1)[0].strip()
        body = text.split("\n", 2)[-1] if "\n" in text else text
        yield {
            "id": f"topic-chat:{name}",
            "kind": "chat",
            "messages": [
                {"role": "user", "content": f"What does the Python documentation say about {title.lower()}?"},
                {"role": "assistant", "content": first_paragraphs(body)},
            ],
        }


def module_records(module_name: str):
    try:
        module = importlib.import_module(module_name)
    except ImportError:  # optional modules (a Python built without them) only shrink the corpus
        return
    module_doc = inspect.getdoc(module)
    if module_doc:
        text = unwrap(module_doc)
        yield {"id": f"module:{module_name}", "kind": "doc", "text": f"The {module_name} module\n\n{text}"}
        yield {
            "id": f"module-chat:{module_name}",
            "kind": "chat",
            "messages": [
                {"role": "user", "content": f"What is the {module_name} module for?"},
                {"role": "assistant", "content": first_paragraphs(text)},
            ],
        }
    for attr_name, obj in sorted(vars(module).items()):
        if attr_name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj)
        if not doc or len(doc) < 80:
            continue
        text = unwrap(doc)
        qualified = f"{module_name}.{attr_name}"
        kind = "class" if inspect.isclass(obj) else "function"
        yield {"id": f"api:{qualified}", "kind": "doc", "text": f"{qualified} ({kind})\n\n{text}"}
        yield {
            "id": f"api-chat:{qualified}",
            "kind": "chat",
            "messages": [
                {"role": "user", "content": f"What does {qualified} do?"},
                {"role": "assistant", "content": first_paragraphs(text)},
            ],
        }


def is_heldout(record_id: str) -> bool:
    digest = hashlib.sha256(record_id.encode()).digest()
    return digest[0] * 100 // 256 < HELDOUT_PERCENT


def build(out_dir: Path) -> dict[str, int]:
    records = list(topic_records())
    for module_name in DOCUMENTED_MODULES:
        records.extend(module_records(module_name))
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "heldout": 0}
    files = {split: open(out_dir / f"{split}.jsonl", "w", encoding="utf-8") for split in counts}
    try:
        for record in records:
            split = "heldout" if is_heldout(record["id"]) else "train"
            files[split].write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[split] += 1
    finally:
        for f in files.values():
            f.close()
    (out_dir / "SOURCE.md").write_text(
        "# Demo corpus\n\n"
        f"Extracted by `python -m edgeqwen.demo.corpus` from the documentation bundled with CPython "
        f"{sys.version.split()[0]}: `pydoc_data.topics` and the docstrings of {len(DOCUMENTED_MODULES)} "
        "standard-library modules.\n\n"
        "Copyright (c) 2001 Python Software Foundation; All Rights Reserved. Distributed under the "
        "Python Software Foundation License Version 2 (https://docs.python.org/3/license.html), "
        "which permits redistribution with this notice.\n",
        encoding="utf-8",
    )
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "corpus")
    args = parser.parse_args(argv)
    counts = build(args.out)
    print(f"wrote {counts['train']} train and {counts['heldout']} held-out records to {args.out}")


if __name__ == "__main__":
    main()
