"""Machine-learning support: window features, ONNX model sessions, and training.

Inference (`features`, `model`) needs only numpy and onnxruntime, which every install
has; training (`train`, `export`) needs the optional `atb[train]` extra (onnx +
scikit-learn) and imports it lazily so a plain install never pays for it.
"""
