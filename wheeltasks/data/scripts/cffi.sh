# cffi compiles against libffi; its pycparser (pure Python, a core module) comes first.
mod_apk="libffi-dev"
mod_depends="pycparser"
