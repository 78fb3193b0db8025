"""BiLSTM sentiment classifier: data -> (pre-train) -> train -> evaluate -> export; `python -m training.sentiment`."""
