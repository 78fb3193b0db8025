"""Global LSTM forecaster: config -> windows -> model -> train -> evaluate -> export (`python -m training.forecast`)."""
