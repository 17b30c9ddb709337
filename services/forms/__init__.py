"""The forms service: typed forms, validated submissions, consumers, dead letters."""
