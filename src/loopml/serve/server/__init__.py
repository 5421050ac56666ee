"""The model server: one model version behind the Open Inference Protocol (KServe V2) and
``POST /predict`` (``app``), its V2 codec (``v2``), adaptive micro-batching (``batching``),
its settings (``config``) and its process entry (``process``, run as ``python -m loopml.serve``).
"""
