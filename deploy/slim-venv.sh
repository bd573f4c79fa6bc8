#!/bin/sh
# Strip what the service never runs from its virtualenv: test suites, onnxruntime's
# Python-side model tools, and the installers themselves. Used by the Dockerfile's
# runtime stage and by `make runtime-size`, so the measured size is the shipped one.
set -eu
VENV=${1:?usage: slim-venv.sh VENV}
SITE=$(echo "$VENV"/lib/python3*/site-packages)
find "$SITE" -depth -type d -name tests -exec rm -rf {} +
rm -rf "$SITE/onnxruntime/transformers" "$SITE/onnxruntime/tools" "$SITE/onnxruntime/quantization"
"$VENV/bin/python" -m pip uninstall -q -y pip setuptools
