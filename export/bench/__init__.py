"""The benchmark behind ``mobilestylegan-bench``: size, MACs and batch-1 CPU latency of a student (and a teacher
baseline) across runtimes. ``driver`` runs one ``worker`` process per (model, runtime) with the ``runners``;
``published`` measures against the published IR side by side; ``report`` writes the markdown table."""
