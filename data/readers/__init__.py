"""One reader per dataset, each taking the official archive layout unchanged."""
