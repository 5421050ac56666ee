"""The peer for ``bench/text.py``: the same classifier through transformers' ``pipeline`` in
PyTorch, behind a Starlette ``POST /predict`` shaped like loopml's (``{"instances":
[{"text": ...}]}``), one torch thread, under uvicorn with the model server's settings.

Run: ``python bench/_pipeline_app.py MODEL_DIR PORT``. ``GET /health`` is 200.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from transformers import (
    AutoModelForSequenceClassification,
    PreTrainedTokenizerFast,
    pipeline,
)

torch.set_num_threads(1)
FOLDER = Path(sys.argv[1])
tokenizer = PreTrainedTokenizerFast(
    tokenizer_file=str(FOLDER / "tokenizer.json"),
    pad_token="[PAD]",
    unk_token="[UNK]",
    cls_token="[CLS]",
    sep_token="[SEP]",
    model_max_length=128,
)
model = AutoModelForSequenceClassification.from_pretrained(str(FOLDER)).eval()
classify = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")


async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    texts = [row["text"] for row in body["instances"]]
    scores = await run_in_threadpool(classify, texts, batch_size=len(texts), top_k=None)
    return Response(orjson.dumps({"predictions": scores}), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[2]),
        access_log=False,
        log_level="warning",
        server_header=False,
    )
