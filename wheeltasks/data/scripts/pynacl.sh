# PyNaCl builds its bundled libsodium with configure and make, and its binding with cffi.
mod_apk="make"
mod_depends="cffi"
