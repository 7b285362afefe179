"""Load an ONNX next-close model and run it in batches through onnxruntime.

Any framework that exports ONNX (PyTorch, TensorFlow, scikit-learn, or atb's own
`python -m atb mode=train`) can supply the model; the contract is checked at load time
so a mismatched file fails with a message naming `strategy.model_path`, not with a
shape error deep inside onnxruntime on the first bar.

Contract: one float input shaped [batch, sequence_length, n_features] (any dimension may
be symbolic; a fixed batch is honoured by padding the last chunk), one output holding
one normalised close per window ([batch], [batch, 1] or [batch, 1, 1]).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "ml_basic_btcusdt_1h.onnx"
KEY = "strategy.model_path"


class ModelError(ValueError):
    """The model file is missing, unreadable, or does not fit the strategy's input."""


def model_id_of(data: bytes) -> str:
    """Stable identity of a model file: the first 12 hex digits of its sha256.

    Derived from the bytes rather than from metadata so a user's dropped-in model gets
    an id too, and a retrained model can never be mistaken for the old one.
    """
    return hashlib.sha256(data).hexdigest()[:12]


def metadata_path(model_path: Path) -> Path:
    return model_path.with_suffix(".json")


def load_metadata(model_path: Path) -> dict[str, Any]:
    """The sidecar JSON written by training, or {} for models that came without one."""
    path = metadata_path(model_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{KEY}: cannot read model metadata '{path}': {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{KEY}: model metadata '{path}' is not a JSON object")
    return data


def _shape_text(shape: list[Any]) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in shape) + "]"


@dataclass
class OnnxModel:
    """An onnxruntime session checked against the expected [batch, L, F] input."""

    path: Path
    sequence_length: int
    n_features: int
    batch_size: int = 4096
    threads: int = 0
    model_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    _session: Any = None
    _input: str = ""
    _output: str = ""
    _fixed_batch: int | None = None
    _input_dtype: Any = np.float32

    @classmethod
    def load(
        cls,
        path: str | Path | None,
        sequence_length: int,
        n_features: int,
        batch_size: int = 4096,
        threads: int = 0,
    ) -> OnnxModel:
        resolved = Path(path).expanduser() if path is not None else DEFAULT_MODEL
        model = cls(resolved, sequence_length, n_features, batch_size, threads)
        model._open()
        return model

    def _open(self) -> None:
        import onnxruntime as ort  # deferred: ~0.2 s import only paid by runs that use a model

        path = self.path
        if not path.exists():
            hint = (
                " (the shipped model is missing: reinstall atb or run `python -m atb mode=train`)"
                if path == DEFAULT_MODEL
                else ""
            )
            raise ModelError(f"{KEY}: model file '{path}' does not exist{hint}")
        if not path.is_file():
            raise ModelError(f"{KEY}: '{path}' is not a file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{KEY}: cannot read model file '{path}': {exc}") from exc
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings go to stderr, bypassing atb logs
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail…)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"{KEY}: '{path}' is not a loadable ONNX model ({type(exc).__name__}: {first})"
            ) from exc
        self.model_id = model_id_of(data)
        self.metadata = load_metadata(path)
        self._check_signature(session)
        self._session = session

    def _check_signature(self, session: Any) -> None:
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        want = f"[batch, {self.sequence_length}, {self.n_features}]"
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"{KEY}: '{self.path}' has {len(inputs)} inputs ({names}); expected one "
                f"input shaped {want}"
            )
        if len(outputs) < 1:
            raise ModelError(f"{KEY}: '{self.path}' has no outputs")
        inp = inputs[0]
        shape = list(inp.shape or [])  # None = undeclared rank: rejected below as shape []
        fixed = [d if isinstance(d, int) and d > 0 else None for d in shape]
        ok = (
            len(shape) == 3
            and fixed[1] in (None, self.sequence_length)
            and fixed[2] in (None, self.n_features)
        )
        if not ok:
            raise ModelError(
                f"{KEY}: '{self.path}' expects input '{inp.name}' shaped {_shape_text(shape)}, "
                f"but ml_basic feeds {want} (strategy.sequence_length={self.sequence_length}, "
                f"features open, high, low, close, volume)"
            )
        if inp.type not in ("tensor(float)", "tensor(double)"):
            raise ModelError(
                f"{KEY}: '{self.path}' input '{inp.name}' has type {inp.type}; expected "
                "tensor(float)"
            )
        # An undeclared output shape is accepted here; predict() checks the real result.
        out_shape = list(outputs[0].shape) if outputs[0].shape is not None else ["batch"]
        tail = [d for d in out_shape[1:] if not (isinstance(d, int) and d == 1)]
        if len(out_shape) < 1 or len(out_shape) > 3 or any(isinstance(d, int) for d in tail):
            raise ModelError(
                f"{KEY}: '{self.path}' output '{outputs[0].name}' is shaped "
                f"{_shape_text(out_shape)}; expected one value per window ([batch] or [batch, 1])"
            )
        self._input = inp.name
        self._output = outputs[0].name
        self._fixed_batch = fixed[0]
        self._input_dtype = np.float64 if inp.type == "tensor(double)" else np.float32

    @property
    def input_shape(self) -> list[Any]:
        return list(self._session.get_inputs()[0].shape)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """One normalised close per window, as float64, for windows shaped (m, L, F).

        Batches bound peak memory for long histories; a model with a fixed batch size
        gets exactly that many rows per call (the last chunk zero-padded, then trimmed).
        """
        m = windows.shape[0]
        if m == 0:
            return np.empty(0)
        x = windows.astype(self._input_dtype, copy=False)
        step = self._fixed_batch or max(1, self.batch_size)
        out = np.empty(m, dtype=np.float64)
        for start in range(0, m, step):
            chunk = x[start : start + step]
            n = chunk.shape[0]
            if self._fixed_batch and n < step:
                pad = np.zeros((step - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            (result,) = self._session.run([self._output], {self._input: chunk})
            result = np.asarray(result)
            if result.size != chunk.shape[0]:
                raise ModelError(
                    f"{KEY}: '{self.path}' returned {result.shape} for a batch of "
                    f"{chunk.shape[0]} windows; expected one value per window"
                )
            out[start : start + n] = result.reshape(-1)[:n]
        return out
