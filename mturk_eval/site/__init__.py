"""The toolkit's own rating site: store (platform-side state), Flask app, hand-back hooks, serving."""
