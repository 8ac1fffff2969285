#ifndef BOTRT_CXATTR_SHIM_H
#define BOTRT_CXATTR_SHIM_H
// Extended attributes (part of glibc; not in Swift's Glibc module).
#include <sys/xattr.h>
#endif
