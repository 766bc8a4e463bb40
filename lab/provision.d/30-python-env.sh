# The repo's Python environment (.venv) from uv.lock: every workspace package
# installed editable plus the test tools, exactly as locked.
if ! command -v uv >/dev/null; then
  progress "  installing uv"
  run_logged pip-uv python3 -m pip install --quiet "uv==0.13.9"
fi
run_logged uv-sync uv sync --frozen --all-packages --project "$REPO_DIR"
