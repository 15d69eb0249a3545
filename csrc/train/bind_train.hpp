// Registers the training classes (Trainer, Tape) on the _engine module.
#pragma once
#include <nanobind/nanobind.h>

namespace cc_nb {
void bind_train(nanobind::module_& m, nanobind::module_& testing);  // testing: the kernels' test hooks
}
