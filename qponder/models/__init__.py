"""Students and any HF VLM behind one loader; the answer contract."""
