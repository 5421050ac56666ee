"""The deployment page's code snippets: a curl line and a Python program for ``/predict`` and
for the V2 (Open Inference Protocol) infer path, each sending the served version's example
row as pasted, the token read from ``$LOOPML_TOKEN`` when the paths ask for one.

The V2 body has one ``[1]`` tensor per column, named like the column (the pandas codec's
way, which every column type can take), typed from the signature: the serving side
(``loopml.serve.server.v2``) accepts an integer value for a float column and a float or an
integer for a boolean one, so a value that is not of its column's type still gets a
datatype that carries it.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from loopml.packaging import Signature

_CURL_BEARER = ' -H "Authorization: Bearer $LOOPML_TOKEN"'
_PYTHON_BEARER = "    headers={'Authorization': f\"Bearer {os.environ['LOOPML_TOKEN']}\"},"


def datatype(column_type: str | None, value: Any) -> str:
    """The V2 tensor datatype for one value of a column of ``column_type`` (``None``: no
    signature, the value alone decides)."""
    if column_type == "string" or isinstance(value, str):
        return "BYTES"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int) and column_type != "float":
        return "INT64"
    # A float, a missing value (FP* tensors hold null) or an integer of a float column.
    return "FP64"


def v2_inputs(row: dict[str, Any], signature: Signature | None) -> list[dict[str, Any]]:
    """``row`` as V2 input tensors, one per column, in the row's order."""
    types = {c.name: c.type for c in signature.inputs} if signature is not None else {}
    return [
        {"name": name, "shape": [1], "datatype": datatype(types.get(name), value), "data": [value]}
        for name, value in row.items()
    ]


def _curl(url: str, body: dict[str, Any], token: bool) -> str:
    text = json.dumps(body, separators=(",", ":"))
    header = _CURL_BEARER if token else ""
    return (
        f"curl -s {shlex.quote(url)} -H 'content-type: application/json'{header} "
        f"-d {shlex.quote(text)}"
    )


def _python(url: str, body_lines: list[str], token: bool, answer: str) -> str:
    lines = ["import os", "", "import httpx", ""] if token else ["import httpx", ""]
    lines += ["answer = httpx.post(", f"    {url!r},", *body_lines]
    if token:
        lines.append(_PYTHON_BEARER)
    lines += ["    timeout=60,", ")", "answer.raise_for_status()", f"print({answer})"]
    return "\n".join(lines)


def snippets(
    urls: dict[str, str], row: dict[str, Any], signature: Signature | None, token: bool
) -> dict[str, str]:
    """The four snippets (``curl``, ``python``, ``v2_curl``, ``v2_python``) that POST
    ``row`` to the deployment's ``predict`` and ``v2`` URLs as pasted; without a ``v2``
    URL (a deployment completed from feature views takes ``/predict`` only), the first two.
    """
    made = {
        "curl": _curl(urls["predict"], {"instances": [row]}, token),
        "python": _python(
            urls["predict"], [f"    json={{'instances': [{row!r}]}},"], token, "answer.json()"
        ),
    }
    if urls.get("v2"):
        tensors = v2_inputs(row, signature)
        body = ["    json={'inputs': [", *(f"        {t!r}," for t in tensors), "    ]},"]
        made["v2_curl"] = _curl(urls["v2"], {"inputs": tensors}, token)
        made["v2_python"] = _python(urls["v2"], body, token, "answer.json()['outputs']")
    return made
