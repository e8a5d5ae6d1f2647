# Two commands for a newcomer: `make demo` (set-up + the main job) and `make test`.
PYTHON ?= python3
# pytest-xdist workers for `make test`, one intra-op thread each (tests/conftest.py); 2 on the 2-core CI machine
TEST_WORKERS ?= 2
VENV := .venv
PY := $(VENV)/bin/python
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test test-quick install data clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST: Debian's package where apt is available (as root); otherwise the demo downloads it with
# torchvision where the machine has internet.
data:
	@if [ -f $(FMNIST) ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  || echo "apt-get could not install dataset-fashion-mnist; the demo will try a torchvision download"; \
	else echo "no apt: the demo will try a torchvision download"; fi

demo: install data
	$(PY) -m training.demo

test: install
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	tests/installed_wheel.sh $(PY)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=10

# the quick subset while working: everything but the recipe checks, the multi-process runs and the documents whose
# blocks train (pytest -m "not slow"); CI runs `make test`
test-quick: install
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow" --durations=10

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
