# psutil's C extension includes the Linux kernel headers.
mod_apk="linux-headers"
