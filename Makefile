# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint sysdeps clean

# open3d wheels need libusb-1.0 at import time; install it where we can (Debian, as root).
sysdeps:
	@if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libusb-1.0-0 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1)) || \
	    echo "note: could not install libusb-1.0-0; open3d features (PCD I/O) will report how to fix it"; \
	  else echo "note: libusb-1.0-0 missing; run 'sudo apt-get install libusb-1.0-0' for open3d features"; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

demo: sysdeps $(STAMP)
	$(BIN)/fusion inspect data_samples/sim_drive.mcap
	$(BIN)/fusion detect data_samples/sim_drive.mcap --out out/demo --overwrite
	$(BIN)/fusion validate out/demo
	$(BIN)/fusion eval --pred out/demo --gt data_samples/sim_drive.labels.parquet --max-range 50
	$(BIN)/fusion eval --tracking --pred out/demo --gt data_samples/sim_drive.labels.parquet
	@echo
	@echo "The pre-label dataset of the sample log (3 s simulated drive): out/demo"
	@echo "  (dataset.json, sequences.parquet, frames/ labels/ points/ images/: see shared/CONTRACT.md)"
	@echo "Its exact ground truth: data_samples/sim_drive.labels.parquet"
	@echo "  .venv/bin/python -c \"import pandas as pd; print(pd.read_parquet('out/demo/labels'))\""
	@echo "  .venv/bin/python -c \"from exporters.reader import open_dataset; s = open_dataset('out/demo').sequence('sim_drive'); print(s.frames(as_pandas=True))\""

test: sysdeps $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: sysdeps $(STAMP)
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/projection.py
	$(BIN)/python bench/detect.py
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/kitti_tracking.py --out out/kitti_tracking --overwrite
	DASK_LOGGING__DISTRIBUTED=critical $(BIN)/python bench/pipeline.py

lint: $(STAMP)
	$(BIN)/ruff check fusion calib trackers exporters tests bench
	$(BIN)/mypy fusion calib trackers exporters

clean:
	rm -rf $(VENV)
