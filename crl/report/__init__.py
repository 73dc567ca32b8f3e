"""``crl report``: run directories -> records -> metrics per run and per group -> CSV, JSON, Markdown, plots."""
