//! Realistic messages written for these tests; every name, number and id is invented.

/// Joins segment lines with a terminator, ending the last one too.
pub fn join(lines: &[&str], terminator: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in lines {
        out.push_str(line);
        out.push_str(terminator);
    }
    out.into_bytes()
}

/// Joins segment lines with carriage returns, as the standard says.
pub fn cr(lines: &[&str]) -> Vec<u8> {
    join(lines, "\r")
}

/// ADT^A01, admit an inpatient: v2.5.1, UTF-8, enhanced acknowledgement mode, a Z-segment.
pub const ADT_A01: &[&str] = &[
    r#"MSH|^~\&|EPIC|MERCY^1.2.840.114350.1.13.0.1.7.2.696570^ISO|TENET|CLINIC|20240315083012-0500||ADT^A01^ADT_A01|MSG-A01-0001|P|2.5.1|||AL|NE||UNICODE UTF-8"#,
    r#"EVN|A01|20240315083000-0500|||JSMITH^SMITH^JOHN^^^^^^MERCY|20240315082500-0500|MERCY"#,
    r#"PID|1||000123456^^^MERCY^MR~999887777^^^USSSA&2.16.840.1.113883.4.1&ISO^SS||O'BRIEN^MARY^ANN^^MS^^L~OBRIEN^MARY^^^^^A||19800709|F||2106-3^White^HL70005|742 EVERGREEN TERRACE^APT 2B^SPRINGFIELD^IL^62704^USA^H||^PRN^PH^^1^217^5550123~^NET^Internet^mary.obrien@example.org|^WPN^PH^^1^217^5559876^12|en^English^ISO639|M||ACC-778899^^^MERCY^AN"#,
    r#"PV1|1|I|4W^402^B^MERCY^^^MAIN^4|E|||1234567890^HOUSE^GREGORY^^^DR^MD^^NPI&2.16.840.1.113883.4.6&ISO^^^^NPI|||MED||||7|||1234567890^HOUSE^GREGORY^^^DR^MD|IN|V-2024-000555^^^MERCY^VN|||||||||||||||||||||||||20240315080000-0500"#,
    r#"NK1|1|O'BRIEN^PATRICK|SPO^Spouse^HL70063|742 EVERGREEN TERRACE^^SPRINGFIELD^IL^62704|^PRN^PH^^1^217^5550124"#,
    r#"AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives"#,
    r#"DG1|1||I10^Essential (primary) hypertension^I10|||A"#,
    r#"ZPI|1|VIP^Very important person|Prefers quiet room \T\ morning visits"#,
];

/// ADT^A03, discharge: v2.4, MSH-18 empty.
pub const ADT_A03: &[&str] = &[
    r#"MSH|^~\&|EPIC|MERCY|TENET|CLINIC|20240319143500-0500||ADT^A03^ADT_A03|MSG-A03-0002|P|2.4"#,
    r#"EVN|A03|20240319143000-0500"#,
    r#"PID|1||000123456^^^MERCY^MR||O'BRIEN^MARY^ANN||19800709|F"#,
    r#"PV1|1|I|4W^402^B^MERCY||||1234567890^HOUSE^GREGORY|||MED|||||||||V-2024-000555^^^MERCY^VN|||||||||||||||||01||||||||20240315080000-0500|20240319143000-0500"#,
];

/// ADT^A04, register an outpatient: v2.3, a year-only birth date.
pub const ADT_A04: &[&str] = &[
    r#"MSH|^~\&|ATHENA|NORTH|TENET|CLINIC|202404020955||ADT^A04|MSG-A04-0003|T|2.3"#,
    r#"EVN|A04|202404020955"#,
    r#"PID|1||N-44556^^^NORTH^MR||NGUYEN^MINH^^^^^L||1995|M|||12 RUE DES LILAS^^QUEBEC^QC^G1R 4P5^CAN^H||(418)555-0142"#,
    r#"PV1|1|O|CLINIC-B^^^NORTH|R|||2234567891^NGUYEN^LINH^^^DR|||PSY|||||||||V-2024-000777^^^NORTH^VN|||||||||||||||||||||||||202404021000"#,
];

/// ADT^A08, update patient information, with the custom delimiters `#*!@%` and escapes.
pub const ADT_A08: &[&str] = &[
    r#"MSH#*!@%#CERNER#SOUTH#TENET#CLINIC#20240405120000+0100##ADT*A08*ADT_A01#MSG-A08-0004#P#2.5######UNICODE UTF-8"#,
    r#"EVN##20240405120000+0100"#,
    r#"PID#1##S-1001*@S@A*@T@B*SOUTH*MR!S-1002***SOUTH*AN##SMITH@F@JONES*ANNA#MAIDEN#19721130#F###1 HIGH STREET*FLAT 3*LONDON**N1 9GU*GBR*H"#,
    r#"PV1#1#I#WARD 5*12*A*SOUTH"#,
];

/// ADT^A40, merge patient identifiers, with an MRG segment.
pub const ADT_A40: &[&str] = &[
    r#"MSH|^~\&|EPIC|MERCY|TENET|CLINIC|20240320090000-0500||ADT^A40^ADT_A39|MSG-A40-0005|P|2.5.1"#,
    r#"EVN|A40|20240320090000-0500"#,
    r#"PID|1||000123456^^^MERCY^MR||O'BRIEN^MARY^ANN||19800709|F"#,
    r#"MRG|000654321^^^MERCY^MR~000654000^^^MERCY^MR||||V-2023-000100^^^MERCY^VN"#,
];

/// ORU^R01, two lab panels: 28 segments, about 5 KB, notes, a TX value with escapes, CWE and SN values.
pub const ORU_R01: &[&str] = &[
    r#"MSH|^~\&|LABSYS|MERCY_LAB^2.16.840.1.113883.3.999^ISO|TENET|CLINIC|20240316101500-0500||ORU^R01^ORU_R01|LAB-20240316-0042|P|2.5.1|||NE|NE||UNICODE UTF-8"#,
    r#"PID|1||000123456^^^MERCY^MR||O'BRIEN^MARY^ANN||19800709|F"#,
    r#"PV1|1|O|LAB^^^MERCY||||1234567890^HOUSE^GREGORY^^^DR^MD||||||||||||V-2024-000555^^^MERCY^VN"#,
    r#"ORC|RE|PLC-1001^TENET|FIL-5001^MERCY_LAB||CM||||20240316100000-0500|||1234567890^HOUSE^GREGORY^^^DR^MD"#,
    r#"OBR|1|PLC-1001^TENET|FIL-5001^MERCY_LAB|58410-2^CBC panel - Blood by Automated count^LN|||20240316073000-0500|||||||||1234567890^HOUSE^GREGORY^^^DR^MD||||||20240316101000-0500||HM|F"#,
    r#"NTE|1|L|Specimen received ambient.\.br\Processed within 2 hours."#,
    r#"OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||7.2|10*3/uL^10*3/uL^UCUM|4.5-11.0|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS|||20240316094500-0500"#,
    r#"OBX|2|NM|789-8^Erythrocytes [#/volume] in Blood by Automated count^LN||4.05|10*6/uL^10*6/uL^UCUM|4.20-5.40|L|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|3|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||11.8|g/dL^g/dL^UCUM|12.0-16.0|L|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"NTE|1|L|Mild anemia; suggest iron studies."#,
    r#"OBX|4|NM|4544-3^Hematocrit [Volume Fraction] of Blood by Automated count^LN||35.9|%^%^UCUM|36.0-46.0|L|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|5|NM|787-2^MCV [Entitic volume] by Automated count^LN||88.6|fL^fL^UCUM|80-100|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|6|NM|785-6^MCH [Entitic mass] by Automated count^LN||29.1|pg^pg^UCUM|27-33|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|7|NM|786-4^MCHC [Mass/volume] by Automated count^LN||32.9|g/dL^g/dL^UCUM|32-36|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|8|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN||245|10*3/uL^10*3/uL^UCUM|150-400|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBR|2|PLC-1002^TENET|FIL-5002^MERCY_LAB|24323-8^Comprehensive metabolic 2000 panel - Serum or Plasma^LN|||20240316073000-0500|||||||||1234567890^HOUSE^GREGORY^^^DR^MD||||||20240316101200-0500||CH|F"#,
    r#"OBX|1|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||182|mg/dL^mg/dL^UCUM|70-99|H|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|2|NM|3094-0^Urea nitrogen [Mass/volume] in Serum or Plasma^LN||18|mg/dL^mg/dL^UCUM|7-20|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|3|NM|2160-0^Creatinine [Mass/volume] in Serum or Plasma^LN||1.02|mg/dL^mg/dL^UCUM|0.57-1.00|H|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|4|NM|2951-2^Sodium [Moles/volume] in Serum or Plasma^LN||118|mmol/L^mmol/L^UCUM|135-145|LL~A|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"NTE|1|L|Critical value called to the ordering provider at 10:14, read back confirmed."#,
    r#"OBX|5|NM|2823-3^Potassium [Moles/volume] in Serum or Plasma^LN||4.1|mmol/L^mmol/L^UCUM|3.5-5.1|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|6|NM|2075-0^Chloride [Moles/volume] in Serum or Plasma^LN||99|mmol/L^mmol/L^UCUM|98-107|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|7|NM|2028-9^Carbon dioxide, total [Moles/volume] in Serum or Plasma^LN||24|mmol/L^mmol/L^UCUM|22-29|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|8|NM|17861-6^Calcium [Mass/volume] in Serum or Plasma^LN||9.4|mg/dL^mg/dL^UCUM|8.6-10.3|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|9|TX|8251-1^Service comment^LN||Sample slightly hemolyzed\.br\Potassium \T\ LDH may read high||||||C|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|10|CWE|5778-6^Color of Urine^LN||YEL^Yellow^HL70000||||||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
    r#"OBX|11|SN|33914-3^Glomerular filtration rate/1.73 sq M.predicted^LN||>^60|mL/min/{1.73_m2}^^UCUM|>60|N|||F|||20240316073000-0500|MERCY_LAB^Mercy Hospital Laboratory^CLIA|TECH0042^SMITH^JOHN^^^^MLS"#,
];
