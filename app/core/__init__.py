"""Cross-cutting building blocks every domain package uses: money, database base, errors, HTTP, logging."""
