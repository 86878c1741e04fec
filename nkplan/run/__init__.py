"""Running the work: the applier (undo journal), plan -> apply -> verify, the stack lock."""
