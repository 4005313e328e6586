"""Dataset readers (official layouts), image decoding and caching, crop datasets and demo data."""
