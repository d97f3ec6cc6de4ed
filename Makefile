# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint sysdeps clean mmdet3d-env test-mmdet3d

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

# The whole pipeline on the sample log: `fusion run` on a local Dask cluster of 2 workers (time chunks
# of 1 s, so both work on the 3-s log), the contract's check, the eval tables against the exact ground
# truth, two pictures. --overwrite: a second `make demo` redoes out/demo instead of refusing it.
demo: sysdeps $(STAMP)
	$(BIN)/fusion inspect data_samples/sim_drive.mcap
	$(BIN)/fusion run data_samples/sim_drive.mcap --out out/demo --overwrite --workers 2 --chunk-s 1
	$(BIN)/fusion validate out/demo
	$(BIN)/fusion eval --pred out/demo --gt data_samples/sim_drive.labels.parquet --max-range 50
	$(BIN)/fusion eval --tracking --pred out/demo --gt data_samples/sim_drive.labels.parquet --max-range 50
	$(BIN)/fusion render out/demo --sequence sim_drive --frame 15 --out out/demo/frame.png --overwrite
	$(BIN)/fusion render out/demo --sequence sim_drive --tracks --out out/demo/tracks.png --overwrite
	@echo
	@echo "The pre-label dataset of the sample log (3 s simulated drive): out/demo"
	@echo "  (dataset.json, sequences.parquet, frames/ labels/ points/ images/ flags/: see shared/CONTRACT.md)"
	@echo "Its exact ground truth: data_samples/sim_drive.labels.parquet"
	@echo "One sweep drawn (bird's-eye view beside the three cameras): out/demo/frame.png"
	@echo "Every track drawn (paths on the map, lifelines over the frames): out/demo/tracks.png"
	@echo "  $(BIN)/python -c \"import pandas as pd; print(pd.read_parquet('out/demo/labels'))\""
	@echo "  $(BIN)/python -c \"from exporters.reader import open_dataset; s = open_dataset('out/demo').sequence('sim_drive'); print(s.frames(as_pandas=True))\""
	@echo "  $(BIN)/fusion view out/demo   # the Rerun viewer (or --save out/demo.rrd)"

test: sysdeps $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: sysdeps $(STAMP)
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/projection.py
	$(BIN)/python bench/detect.py
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/kitti_tracking.py --out out/kitti_tracking --overwrite
	$(BIN)/python bench/read_points.py
	DASK_LOGGING__DISTRIBUTED=critical $(BIN)/python bench/pipeline.py

lint: $(STAMP)
	$(BIN)/ruff check fusion calib trackers exporters tests bench
	$(BIN)/mypy fusion calib trackers exporters

# mmdetection3d in its own virtualenv (numpy<2 through nuscenes-devkit, mmcv compiled from source): used only to
# make tests/fixtures/mmdet3d/ and to compare fusion.detect with live mmdet3d. mmdet3d 1.4.0 needs mmcv >=2.0.0rc4,<2.2.0
# and mmdet >=3.0.0,<3.3.0; mmcv 2.1.0 has no wheel for this torch, so it is built here (about 15-40 min on 2 cores),
# which needs setuptools<81 and --no-build-isolation (it imports the installed torch to build). CFLAGS -O1 -g0 (appended
# after Python's -O3 -g) cut the compile CPU time 2.7x; mmcv's CPU ops are only used for the fixture and live test.
MMDET3D_VENV := .venv-mmdet3d
MMDET3D_BIN := $(MMDET3D_VENV)/bin
MMDET3D_STAMP := $(MMDET3D_VENV)/.installed

$(MMDET3D_STAMP):
	@test -x $(MMDET3D_BIN)/python || $(PY) -m venv $(MMDET3D_VENV)
	$(MMDET3D_BIN)/python -m pip install -q "torch==2.13.0" "torchvision==0.28.0" "setuptools<81" wheel ninja "numpy<2" "mmengine==0.10.7"
	CFLAGS="-O1 -g0" MMCV_WITH_OPS=1 MAX_JOBS=2 nice -n 19 $(MMDET3D_BIN)/python -m pip install --no-build-isolation "mmcv==2.1.0"
	nice -n 19 $(MMDET3D_BIN)/python -m pip install "mmdet==3.2.0" "mmdet3d==1.4.0" "numpy<2" pytest ruamel.yaml
	@touch $(MMDET3D_STAMP)

mmdet3d-env: $(MMDET3D_STAMP)
	$(MMDET3D_BIN)/python -c "import mmcv, mmdet, mmdet3d, torch; from mmcv.ops import Voxelization; print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmdet3d', mmdet3d.__version__)"

# Live comparison of fusion.detect with mmdet3d at the full-size configs (skipped where mmdet3d is not importable).
test-mmdet3d: $(MMDET3D_STAMP)
	PYTHONPATH=$(CURDIR) $(MMDET3D_BIN)/python -m pytest -q -rs -W ignore::DeprecationWarning -W ignore::UserWarning \
	  tests/fusion/test_detect_mmdet3d_live.py

clean:
	rm -rf $(VENV)
