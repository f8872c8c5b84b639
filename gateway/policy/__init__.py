"""The policy plug-in: the hook that decides every statement, its CLI and its catalog reads."""
