"""Data loaders, one module per family: fetch (from pinned package archives) + cache + split."""
