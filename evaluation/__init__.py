"""Independent evaluation: data that training/ never reads, and the scores of published versions on it."""
