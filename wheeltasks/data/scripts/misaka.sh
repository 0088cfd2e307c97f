# misaka bundles its C sources (hoedown) and builds its extension with cffi.
mod_depends="cffi"
