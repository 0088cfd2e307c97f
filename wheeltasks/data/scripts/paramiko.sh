# paramiko is pure Python, but its dependencies are not: build them from this
# project's own wheel images first (the planner reads this line on the host).
mod_depends="cryptography-${SSL} pynacl bcrypt"
