"""Signal processing without networks: feature analysis and the vocoder's postfilter."""
