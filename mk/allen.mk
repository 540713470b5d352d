# The Allen Brain Observatory fetch stage lives in its own virtual environment:
# allensdk 2.16.2 pins numpy<1.24, pandas 1.5, scipy<1.11 and xarray<2023.2,
# which the core (.venv) does not share. Only `neurozoo data fetch` runs here;
# it writes a plain netCDF file plus a stimulus folder that the core reads.
# Included from the main Makefile: `include mk/allen.mk`.
ALLEN_PYTHON ?= python3
ALLEN_VENV := .venv-allen
ALLEN_BIN := $(ALLEN_VENV)/bin
ALLEN_STAMP := $(ALLEN_VENV)/.installed

.PHONY: allen-env test-allen

# allensdk's Brain Observatory modules need statsmodels<0.15 (0.15 removed a
# function they import); pynwb 2.8 needs hdmf 3.x (hdmf 4+ breaks NWBFile).
# One pip call, so pynwb never caches a type map built with another hdmf.
$(ALLEN_STAMP): pyproject.toml mk/allen.mk
	rm -rf $(ALLEN_VENV)
	$(ALLEN_PYTHON) -m venv $(ALLEN_VENV)
	$(ALLEN_BIN)/pip install -q --upgrade pip
	$(ALLEN_BIN)/pip install -q "allensdk==2.16.2" "statsmodels<0.15" "hdmf<4" \
		"h5netcdf<1.4" pynwb h5py pyyaml tqdm "pytest>=7"
	$(ALLEN_BIN)/pip install -q --no-deps -e .
	$(ALLEN_BIN)/python -c "import allensdk.core.brain_observatory_cache, \
		allensdk.brain_observatory.ecephys.ecephys_project_cache, neurozoo.allen.fetch"
	touch $(ALLEN_STAMP)

allen-env: $(ALLEN_STAMP)

test-allen: $(ALLEN_STAMP)
	$(ALLEN_BIN)/python -m pytest -q -p no:cacheprovider tests/allen
