"""MkDocs hook: a `<!-- reference: NAME -->` line becomes the page generated from the code
(cl_sweeps/reference_docs.py), so the reference cannot drift from the declarations."""

import re

from cl_sweeps.reference_docs import render

MARK = re.compile(r"^<!-- reference: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: object) -> str:
    return MARK.sub(lambda match: render(match.group(1)), markdown)
