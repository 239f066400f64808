"""Export of trained students to ONNX / OpenVINO, parity checks and benchmarks."""
