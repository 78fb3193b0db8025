"""Word-level LSTM language model: data -> model -> train -> evaluate -> export; `python -m training.wordlm`."""
