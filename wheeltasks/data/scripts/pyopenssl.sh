# pyOpenSSL is pure Python on top of cryptography: its SSL variant is cryptography's.
mod_depends="cryptography-${SSL}"
