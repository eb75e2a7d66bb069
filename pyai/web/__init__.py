"""The web face: the gate, the handlers of /<id>, the control plane, auth, receive and the worker."""
