#ifndef BOTRT_CYAML_SHIM_H
#define BOTRT_CYAML_SHIM_H
#include <yaml.h>
#endif
