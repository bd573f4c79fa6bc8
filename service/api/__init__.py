"""HTTP layer: one router per concern, all thin over service.embedding."""
