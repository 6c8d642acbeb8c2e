//! Tests of the hl7 crate as a whole: property-based fuzzing of the MLLP framer and the
//! message parser and mapping (proptest, stable toolchain).

mod fuzz;
