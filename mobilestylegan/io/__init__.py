"""Reading and writing students: the native checkpoint format, Lightning checkpoints, the published OpenVINO IR
importer, one loader for any source, image files (photos read, PNGs, grids and strips written)."""
