"""Training tests run on a small, busy machine: keep OpenMP threads from spinning."""

import os

# Must be set before LightGBM/ONNX Runtime start their OpenMP pools, hence at import time.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
