//! HL7 composite data types read from one repetition (their parts are
//! components) or from one component (their parts are sub-components).
//!
//! Every accessor decodes one part on demand and returns `None` when it is
//! empty. `Debug` must never print a part: composites hold names and ids.

use std::borrow::Cow;
use std::fmt;

use crate::segment::{Component, Repetition, Separator, Value};

/// A composite value and the separator between its parts.
#[derive(Clone, Copy)]
struct Parts<'m> {
    value: Option<Value<'m>>,
    separator: Separator,
}

impl<'m> Parts<'m> {
    fn of_repetition(repetition: Option<Repetition<'m>>) -> Self {
        Parts {
            value: repetition.map(|r| r.value()),
            separator: Separator::Component,
        }
    }

    fn of_component(component: Option<Component<'m>>) -> Self {
        Parts {
            value: component.map(|c| c.value()),
            separator: Separator::SubComponent,
        }
    }

    fn value(&self, n: usize) -> Option<Value<'m>> {
        self.value?.part(self.separator, n)
    }

    fn text(&self, n: usize) -> Option<Cow<'m, str>> {
        self.value(n).filter(|v| !v.is_empty()).map(|v| v.decoded())
    }

    /// Part `n` as a composite of its own, one level down.
    fn nested(&self, n: usize) -> Parts<'m> {
        Parts {
            value: self.value(n),
            separator: match self.separator {
                Separator::Component => Separator::SubComponent,
                Separator::SubComponent | Separator::None => Separator::None,
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.value.is_none_or(|v| v.is_empty())
    }
}

macro_rules! composite {
    (
        $(#[$doc:meta])*
        $name:ident { $( $(#[$part_doc:meta])* $part:ident = $n:literal ),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'m>(Parts<'m>);

        impl<'m> $name<'m> {
            /// Reads the composite from a repetition (parts are components).
            pub fn from_repetition(repetition: Repetition<'m>) -> Self {
                $name(Parts::of_repetition(Some(repetition)))
            }

            /// Reads the composite from a component (parts are sub-components).
            pub fn from_component(component: Component<'m>) -> Self {
                $name(Parts::of_component(Some(component)))
            }

            /// Part `n`, 1-based, raw, for the parts without an accessor.
            pub fn part(&self, n: usize) -> Option<Value<'m>> {
                self.0.value(n)
            }

            /// Whether the whole value is empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            $(
                $(#[$part_doc])*
                pub fn $part(&self) -> Option<Cow<'m, str>> {
                    self.0.text($n)
                }
            )*
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Parts are PHI: never print them.
                f.write_str(concat!(stringify!($name), " { .. }"))
            }
        }
    };
}

composite!(
    /// HD, a hierarchic designator: an application, a facility or an
    /// assigning authority.
    Hd {
        /// HD-1, the namespace id.
        namespace_id = 1,
        /// HD-2, the universal id (an OID, for example).
        universal_id = 2,
        /// HD-3, the universal id type (`ISO`, `DNS`, …).
        universal_id_type = 3,
    }
);

composite!(
    /// CX, an identifier with its assigning authority (PID-3).
    Cx {
        /// CX-1, the identifier itself.
        id = 1,
        /// CX-2, the check digit.
        check_digit = 2,
        /// CX-3, the check digit scheme.
        check_digit_scheme = 3,
        /// CX-5, the identifier type code (`MR`, `SS`, …).
        identifier_type_code = 5,
    }
);

impl<'m> Cx<'m> {
    /// CX-4, the assigning authority.
    pub fn assigning_authority(&self) -> Hd<'m> {
        Hd(self.0.nested(4))
    }

    /// CX-6, the assigning facility.
    pub fn assigning_facility(&self) -> Hd<'m> {
        Hd(self.0.nested(6))
    }
}

composite!(
    /// XPN, a person's name (PID-5).
    Xpn {
        /// XPN-2, the given name.
        given_name = 2,
        /// XPN-3, second and further given names or initials.
        middle_names = 3,
        /// XPN-4, the suffix (`JR`, `III`).
        suffix = 4,
        /// XPN-5, the prefix (`DR`).
        prefix = 5,
        /// XPN-6, the degree (`MD`).
        degree = 6,
        /// XPN-7, the name type code (`L` legal, …).
        name_type_code = 7,
    }
);

impl<'m> Xpn<'m> {
    /// XPN-1.1, the surname.
    pub fn family_name(&self) -> Option<Cow<'m, str>> {
        self.0.nested(1).text(1)
    }
}

composite!(
    /// XAD, an address (PID-11).
    Xad {
        /// XAD-2, the other designation (apartment, suite).
        other_designation = 2,
        /// XAD-3, the city.
        city = 3,
        /// XAD-4, the state or province.
        state = 4,
        /// XAD-5, the postal code.
        postal_code = 5,
        /// XAD-6, the country.
        country = 6,
        /// XAD-7, the address type (`H` home, …).
        address_type = 7,
    }
);

impl<'m> Xad<'m> {
    /// XAD-1.1, the street or mailing address.
    pub fn street(&self) -> Option<Cow<'m, str>> {
        self.0.nested(1).text(1)
    }
}

composite!(
    /// XTN, a telephone number or other telecommunication address (PID-13).
    Xtn {
        /// XTN-1, the number as one formatted string (deprecated, still common).
        telephone_number = 1,
        /// XTN-2, the use code (`PRN`, `WPN`, `NET`, …).
        use_code = 2,
        /// XTN-3, the equipment type (`PH`, `CP`, `Internet`, …).
        equipment_type = 3,
        /// XTN-4, the e-mail address.
        email = 4,
        /// XTN-5, the country code.
        country_code = 5,
        /// XTN-6, the area or city code.
        area_code = 6,
        /// XTN-7, the local number.
        local_number = 7,
        /// XTN-8, the extension.
        extension = 8,
        /// XTN-12, the unformatted number.
        unformatted_number = 12,
    }
);

composite!(
    /// XCN, a person with an identifier: a clinician (PV1-7, ORC-12).
    Xcn {
        /// XCN-1, the identifier.
        id = 1,
        /// XCN-3, the given name.
        given_name = 3,
        /// XCN-4, second and further given names or initials.
        middle_names = 4,
        /// XCN-5, the suffix.
        suffix = 5,
        /// XCN-6, the prefix.
        prefix = 6,
        /// XCN-7, the degree.
        degree = 7,
        /// XCN-13, the identifier type code (`NPI`, …).
        identifier_type_code = 13,
    }
);

impl<'m> Xcn<'m> {
    /// XCN-2.1, the surname.
    pub fn family_name(&self) -> Option<Cow<'m, str>> {
        self.0.nested(2).text(1)
    }

    /// XCN-9, the assigning authority of the identifier.
    pub fn assigning_authority(&self) -> Hd<'m> {
        Hd(self.0.nested(9))
    }
}

composite!(
    /// PL, a location in a facility (PV1-3).
    Pl {
        /// PL-1, the point of care (nursing unit, clinic).
        point_of_care = 1,
        /// PL-2, the room.
        room = 2,
        /// PL-3, the bed.
        bed = 3,
        /// PL-5, the location status.
        location_status = 5,
        /// PL-7, the building.
        building = 7,
        /// PL-8, the floor.
        floor = 8,
    }
);

impl<'m> Pl<'m> {
    /// PL-4, the facility.
    pub fn facility(&self) -> Hd<'m> {
        Hd(self.0.nested(4))
    }
}

composite!(
    /// CWE (and CE before v2.6), a coded value: an observation identifier,
    /// units, a service.
    Cwe {
        /// CWE-1, the code.
        identifier = 1,
        /// CWE-2, the text.
        text = 2,
        /// CWE-3, the coding system (`LN` for LOINC, …).
        coding_system = 3,
        /// CWE-4, the alternate code.
        alternate_identifier = 4,
        /// CWE-5, the alternate text.
        alternate_text = 5,
        /// CWE-6, the alternate coding system.
        alternate_coding_system = 6,
    }
);

composite!(
    /// EI, an entity identifier: an order number (ORC-2, OBR-3).
    Ei {
        /// EI-1, the identifier.
        entity_id = 1,
        /// EI-2, the namespace id.
        namespace_id = 2,
        /// EI-3, the universal id.
        universal_id = 3,
        /// EI-4, the universal id type.
        universal_id_type = 4,
    }
);

composite!(
    /// MSG, the message type in MSH-9 (`ORU^R01^ORU_R01`).
    MessageType {
        /// MSG-1, the message code (`ADT`, `ORU`).
        code = 1,
        /// MSG-2, the trigger event (`A01`, `R01`).
        trigger = 2,
        /// MSG-3, the message structure (`ADT_A01`), v2.3.1 and later.
        structure = 3,
    }
);

impl<'m> Hd<'m> {
    pub(crate) fn of(repetition: Option<Repetition<'m>>) -> Self {
        Hd(Parts::of_repetition(repetition))
    }
}

impl<'m> MessageType<'m> {
    pub(crate) fn of(repetition: Option<Repetition<'m>>) -> Self {
        MessageType(Parts::of_repetition(repetition))
    }
}
