"""Tools and the command line: ``intdeploy`` and its sub-commands, synthesis, performance."""
