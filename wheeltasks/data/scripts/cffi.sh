# cffi compiles against libffi. pycparser (pure Python) comes from the index.
mod_apk="libffi-dev"
