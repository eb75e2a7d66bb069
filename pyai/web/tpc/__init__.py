"""HTTP third-party copy (COPY): the allow-list of remotes, the outgoing HTTP, the copy's thread, the handler."""
