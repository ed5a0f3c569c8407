use hl7::typed::{AckCondition, FieldError};
use hl7::{DateTime, Message, Precision};

use crate::fixtures::{ADT_A01, ADT_A03, ADT_A04, ADT_A08, ADT_A40, ORU_R01, cr};

fn text(value: Option<std::borrow::Cow<'_, str>>) -> Option<String> {
    value.map(|v| v.into_owned())
}

#[test]
fn msh_exposes_routing_type_control_id_processing_version_and_ack_types() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let msh = message.msh();
    assert_eq!(
        text(msh.sending_application().namespace_id()).as_deref(),
        Some("EPIC")
    );
    let facility = msh.sending_facility();
    assert_eq!(text(facility.namespace_id()).as_deref(), Some("MERCY"));
    assert_eq!(
        text(facility.universal_id()).as_deref(),
        Some("1.2.840.114350.1.13.0.1.7.2.696570")
    );
    assert_eq!(text(facility.universal_id_type()).as_deref(), Some("ISO"));
    assert_eq!(
        text(msh.receiving_application().namespace_id()).as_deref(),
        Some("TENET")
    );
    assert_eq!(
        text(msh.receiving_facility().namespace_id()).as_deref(),
        Some("CLINIC")
    );
    let message_type = msh.message_type();
    assert_eq!(text(message_type.code()).as_deref(), Some("ADT"));
    assert_eq!(text(message_type.trigger()).as_deref(), Some("A01"));
    assert_eq!(text(message_type.structure()).as_deref(), Some("ADT_A01"));
    assert_eq!(text(msh.control_id()).as_deref(), Some("MSG-A01-0001"));
    assert_eq!(text(msh.processing_id()).as_deref(), Some("P"));
    assert_eq!(text(msh.version()).as_deref(), Some("2.5.1"));
    assert_eq!(msh.accept_ack_type(), Ok(Some(AckCondition::Always)));
    assert_eq!(msh.application_ack_type(), Ok(Some(AckCondition::Never)));
    assert_eq!(msh.charset(), hl7::Charset::Utf8);
    let created = msh.datetime().unwrap().unwrap();
    assert_eq!(created.to_string(), "20240315083012-0500");
    assert_eq!(created.offset_minutes(), Some(-300));
}

#[test]
fn msh_of_an_old_version_has_no_structure_and_no_ack_types() {
    let bytes = cr(ADT_A04);
    let message = Message::parse(&bytes).unwrap();
    let msh = message.msh();
    assert_eq!(text(msh.message_type().structure()), None);
    assert_eq!(msh.accept_ack_type(), Ok(None));
    assert_eq!(text(msh.version()).as_deref(), Some("2.3"));
    assert_eq!(
        msh.datetime().unwrap().unwrap().precision(),
        Precision::Minute
    );
}

#[test]
fn pid_exposes_identifiers_with_assigning_authority() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.pid().unwrap();
    let ids: Vec<_> = pid.identifiers().collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(text(ids[0].id()).as_deref(), Some("000123456"));
    assert_eq!(
        text(ids[0].assigning_authority().namespace_id()).as_deref(),
        Some("MERCY")
    );
    assert_eq!(text(ids[0].identifier_type_code()).as_deref(), Some("MR"));
    let ssn = ids[1].assigning_authority();
    assert_eq!(text(ssn.namespace_id()).as_deref(), Some("USSSA"));
    assert_eq!(
        text(ssn.universal_id()).as_deref(),
        Some("2.16.840.1.113883.4.1")
    );
    assert_eq!(text(ssn.universal_id_type()).as_deref(), Some("ISO"));
    let account = pid.account_number().unwrap();
    assert_eq!(text(account.id()).as_deref(), Some("ACC-778899"));
    assert_eq!(text(account.identifier_type_code()).as_deref(), Some("AN"));
}

#[test]
fn pid_exposes_names_birth_date_sex_address_and_phones() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.pid().unwrap();
    let names: Vec<_> = pid.names().collect();
    assert_eq!(names.len(), 2);
    assert_eq!(text(names[0].family_name()).as_deref(), Some("O'BRIEN"));
    assert_eq!(text(names[0].given_name()).as_deref(), Some("MARY"));
    assert_eq!(text(names[0].middle_names()).as_deref(), Some("ANN"));
    assert_eq!(text(names[0].prefix()).as_deref(), Some("MS"));
    assert_eq!(text(names[0].name_type_code()).as_deref(), Some("L"));
    assert_eq!(text(names[1].name_type_code()).as_deref(), Some("A"));
    let birth = pid.birth_datetime().unwrap().unwrap();
    assert_eq!(
        (birth.year(), birth.month(), birth.day()),
        (1980, Some(7), Some(9))
    );
    assert_eq!(birth.precision(), Precision::Day);
    assert_eq!(text(pid.sex()).as_deref(), Some("F"));
    let address = pid.addresses().next().unwrap();
    assert_eq!(
        text(address.street()).as_deref(),
        Some("742 EVERGREEN TERRACE")
    );
    assert_eq!(text(address.other_designation()).as_deref(), Some("APT 2B"));
    assert_eq!(text(address.city()).as_deref(), Some("SPRINGFIELD"));
    assert_eq!(text(address.state()).as_deref(), Some("IL"));
    assert_eq!(text(address.postal_code()).as_deref(), Some("62704"));
    assert_eq!(text(address.country()).as_deref(), Some("USA"));
    assert_eq!(text(address.address_type()).as_deref(), Some("H"));
    let home: Vec<_> = pid.home_phones().collect();
    assert_eq!(home.len(), 2);
    assert_eq!(text(home[0].use_code()).as_deref(), Some("PRN"));
    assert_eq!(text(home[0].area_code()).as_deref(), Some("217"));
    assert_eq!(text(home[0].local_number()).as_deref(), Some("5550123"));
    assert_eq!(
        text(home[1].email()).as_deref(),
        Some("mary.obrien@example.org")
    );
    let work = pid.business_phones().next().unwrap();
    assert_eq!(text(work.extension()).as_deref(), Some("12"));
    assert_eq!(pid.death_datetime(), Ok(None));
}

#[test]
fn pid_of_an_old_sender_keeps_a_formatted_phone_and_a_year_of_birth() {
    let bytes = cr(ADT_A04);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.pid().unwrap();
    assert_eq!(
        text(pid.home_phones().next().unwrap().telephone_number()).as_deref(),
        Some("(418)555-0142")
    );
    let birth = pid.birth_datetime().unwrap().unwrap();
    assert_eq!((birth.year(), birth.month()), (1995, None));
}

#[test]
fn pid_with_custom_delimiters_decodes_escaped_names() {
    let bytes = cr(ADT_A08);
    let message = Message::parse(&bytes).unwrap();
    let pid = message.pid().unwrap();
    let name = pid.names().next().unwrap();
    assert_eq!(text(name.family_name()).as_deref(), Some("SMITH#JONES"));
    assert_eq!(text(name.given_name()).as_deref(), Some("ANNA"));
    let ids: Vec<_> = pid.identifiers().collect();
    assert_eq!(text(ids[0].check_digit()).as_deref(), Some("*A"));
    assert_eq!(text(ids[1].identifier_type_code()).as_deref(), Some("AN"));
    assert_eq!(
        text(pid.addresses().next().unwrap().postal_code()).as_deref(),
        Some("N1 9GU")
    );
}

#[test]
fn pv1_exposes_class_location_and_attending() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let pv1 = message.pv1().unwrap();
    assert_eq!(text(pv1.patient_class()).as_deref(), Some("I"));
    let location = pv1.assigned_location().unwrap();
    assert_eq!(text(location.point_of_care()).as_deref(), Some("4W"));
    assert_eq!(text(location.room()).as_deref(), Some("402"));
    assert_eq!(text(location.bed()).as_deref(), Some("B"));
    assert_eq!(
        text(location.facility().namespace_id()).as_deref(),
        Some("MERCY")
    );
    assert_eq!(text(location.building()).as_deref(), Some("MAIN"));
    assert_eq!(text(location.floor()).as_deref(), Some("4"));
    let attending = pv1.attending_doctors().next().unwrap();
    assert_eq!(text(attending.id()).as_deref(), Some("1234567890"));
    assert_eq!(text(attending.family_name()).as_deref(), Some("HOUSE"));
    assert_eq!(text(attending.given_name()).as_deref(), Some("GREGORY"));
    assert_eq!(text(attending.degree()).as_deref(), Some("MD"));
    assert_eq!(
        text(attending.assigning_authority().universal_id()).as_deref(),
        Some("2.16.840.1.113883.4.6")
    );
    assert_eq!(
        text(attending.identifier_type_code()).as_deref(),
        Some("NPI")
    );
    assert_eq!(pv1.admitting_doctors().count(), 1);
    assert_eq!(text(pv1.hospital_service()).as_deref(), Some("MED"));
    assert_eq!(
        text(pv1.visit_number().unwrap().id()).as_deref(),
        Some("V-2024-000555")
    );
    assert_eq!(
        pv1.admit_datetime().unwrap(),
        Some(DateTime::parse("20240315080000-0500").unwrap())
    );
    assert_eq!(pv1.discharge_datetime(), Ok(None));
}

#[test]
fn a_discharge_has_a_discharge_time_and_disposition() {
    let bytes = cr(ADT_A03);
    let message = Message::parse(&bytes).unwrap();
    let pv1 = message.pv1().unwrap();
    assert_eq!(
        pv1.discharge_datetime().unwrap().unwrap().to_string(),
        "20240319143000-0500"
    );
    assert_eq!(text(pv1.discharge_disposition()).as_deref(), Some("01"));
    assert_eq!(message.charset(), hl7::Charset::Ascii);
}

#[test]
fn evn_exposes_recorded_and_occurred_times_and_the_operator() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let evn = message.evn().unwrap();
    assert_eq!(text(evn.event_type_code()).as_deref(), Some("A01"));
    assert_eq!(
        evn.recorded_datetime().unwrap().unwrap().to_string(),
        "20240315083000-0500"
    );
    assert_eq!(
        evn.occurred_datetime().unwrap().unwrap().to_string(),
        "20240315082500-0500"
    );
    assert_eq!(evn.planned_datetime(), Ok(None));
    assert_eq!(
        text(evn.operators().next().unwrap().family_name()).as_deref(),
        Some("SMITH")
    );
    assert_eq!(
        text(evn.event_facility().namespace_id()).as_deref(),
        Some("MERCY")
    );
}

#[test]
fn oru_observations_expose_value_units_range_flags_status_and_time() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let observations: Vec<_> = message.observations().collect();
    assert_eq!(observations.len(), 19);
    let wbc = observations[0];
    assert_eq!(text(wbc.set_id()).as_deref(), Some("1"));
    assert_eq!(text(wbc.value_type()).as_deref(), Some("NM"));
    let identifier = wbc.identifier().unwrap();
    assert_eq!(text(identifier.identifier()).as_deref(), Some("6690-2"));
    assert_eq!(text(identifier.coding_system()).as_deref(), Some("LN"));
    assert_eq!(text(wbc.value()).as_deref(), Some("7.2"));
    assert_eq!(
        text(wbc.units().unwrap().identifier()).as_deref(),
        Some("10*3/uL")
    );
    assert_eq!(
        text(wbc.units().unwrap().coding_system()).as_deref(),
        Some("UCUM")
    );
    assert_eq!(text(wbc.reference_range()).as_deref(), Some("4.5-11.0"));
    assert_eq!(wbc.abnormal_flags().collect::<Vec<_>>(), ["N"]);
    assert_eq!(text(wbc.result_status()).as_deref(), Some("F"));
    let observed = wbc.observation_datetime().unwrap().unwrap();
    assert_eq!((observed.hour(), observed.minute()), (Some(7), Some(30)));
    assert_eq!(
        wbc.analysis_datetime().unwrap().unwrap().to_string(),
        "20240316094500-0500"
    );

    let sodium = observations[11];
    assert_eq!(
        text(sodium.identifier().unwrap().text()).as_deref(),
        Some("Sodium [Moles/volume] in Serum or Plasma")
    );
    assert_eq!(sodium.abnormal_flags().collect::<Vec<_>>(), ["LL", "A"]);
    let note = sodium.notes().next().unwrap();
    assert!(
        text(note.comment())
            .unwrap()
            .starts_with("Critical value called")
    );

    let comment = observations[16];
    assert_eq!(text(comment.value_type()).as_deref(), Some("TX"));
    assert_eq!(
        text(comment.value()).as_deref(),
        Some("Sample slightly hemolyzed\nPotassium & LDH may read high")
    );
    assert_eq!(text(comment.result_status()).as_deref(), Some("C"));

    let color = observations[17];
    let coded = color.coded_value().unwrap();
    assert_eq!(text(coded.identifier()).as_deref(), Some("YEL"));
    assert_eq!(text(coded.text()).as_deref(), Some("Yellow"));

    let egfr = observations[18];
    let value = egfr.values().next().unwrap();
    assert_eq!(value.component(1).unwrap().as_str(), ">");
    assert_eq!(value.component(2).unwrap().as_str(), "60");
}

#[test]
fn obr_groups_its_observations_and_notes() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let requests: Vec<_> = message.observation_requests().collect();
    assert_eq!(requests.len(), 2);
    let cbc = requests[0];
    assert_eq!(
        text(cbc.universal_service_id().unwrap().identifier()).as_deref(),
        Some("58410-2")
    );
    assert_eq!(cbc.observations().count(), 8);
    assert_eq!(
        text(cbc.notes().next().unwrap().comment()).as_deref(),
        Some("Specimen received ambient.\nProcessed within 2 hours.")
    );
    assert_eq!(
        text(cbc.placer_order_number().unwrap().entity_id()).as_deref(),
        Some("PLC-1001")
    );
    assert_eq!(
        text(cbc.filler_order_number().unwrap().namespace_id()).as_deref(),
        Some("MERCY_LAB")
    );
    assert_eq!(
        cbc.observation_datetime().unwrap().unwrap().to_string(),
        "20240316073000-0500"
    );
    assert_eq!(
        cbc.results_reported_datetime()
            .unwrap()
            .unwrap()
            .to_string(),
        "20240316101000-0500"
    );
    assert_eq!(text(cbc.result_status()).as_deref(), Some("F"));
    assert_eq!(
        text(cbc.diagnostic_service_section()).as_deref(),
        Some("HM")
    );
    assert_eq!(
        text(cbc.ordering_providers().next().unwrap().family_name()).as_deref(),
        Some("HOUSE")
    );
    let cmp = requests[1];
    assert_eq!(cmp.observations().count(), 11);
    assert_eq!(cmp.notes().count(), 0);
    let first = cmp.observations().next().unwrap();
    assert_eq!(
        text(first.identifier().unwrap().identifier()).as_deref(),
        Some("2345-7")
    );
}

#[test]
fn orc_exposes_order_numbers_control_and_status() {
    let bytes = cr(ORU_R01);
    let message = Message::parse(&bytes).unwrap();
    let orc = message.common_orders().next().unwrap();
    assert_eq!(text(orc.order_control()).as_deref(), Some("RE"));
    assert_eq!(
        text(orc.placer_order_number().unwrap().entity_id()).as_deref(),
        Some("PLC-1001")
    );
    assert_eq!(
        text(orc.filler_order_number().unwrap().entity_id()).as_deref(),
        Some("FIL-5001")
    );
    assert!(orc.placer_group_number().is_none());
    assert_eq!(text(orc.order_status()).as_deref(), Some("CM"));
    assert_eq!(
        orc.transaction_datetime().unwrap().unwrap().to_string(),
        "20240316100000-0500"
    );
    assert_eq!(orc.ordering_providers().count(), 1);
}

#[test]
fn nte_comments_decode_line_breaks() {
    let bytes =
        b"MSH|^~\\&|A\rNTE|1|P|First line\\.br\\second~Another repetition|RE^Remark^HL70364\r";
    let message = Message::parse(bytes).unwrap();
    let note = message.notes().next().unwrap();
    assert_eq!(text(note.source()).as_deref(), Some("P"));
    assert_eq!(note.comments().count(), 2);
    assert_eq!(
        text(note.comment()).as_deref(),
        Some("First line\nsecond\nAnother repetition")
    );
    assert_eq!(
        text(note.comment_type().unwrap().identifier()).as_deref(),
        Some("RE")
    );
}

#[test]
fn a_bad_birth_date_is_a_field_error_with_location_and_no_phi() {
    let bytes = b"MSH|^~\\&|A\rPID|1||123||DOE^JANE||19800231|F\r";
    let message = Message::parse(bytes).unwrap();
    let err = message.pid().unwrap().birth_datetime().unwrap_err();
    assert_eq!(err.location().segment_id.unwrap(), "PID");
    assert_eq!(err.location().field, Some(7));
    assert!(matches!(err, FieldError::DateTime { .. }));
    let text = err.to_string();
    assert_eq!(
        text,
        "segment 2 (PID), field PID-7: the date/time has an impossible day"
    );
    assert!(!text.contains("1980"));
}

#[test]
fn an_unknown_ack_type_is_a_field_error() {
    let bytes = b"MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||XX\r";
    let message = Message::parse(bytes).unwrap();
    assert!(matches!(
        message.msh().accept_ack_type(),
        Err(FieldError::UnknownCode { table: "0155", .. })
    ));
}

#[test]
fn a_merge_message_reaches_mrg_through_paths() {
    let bytes = cr(ADT_A40);
    let message = Message::parse(&bytes).unwrap();
    let mrg = message.segment("MRG").unwrap();
    let prior: Vec<String> = mrg
        .field(1)
        .unwrap()
        .repetitions()
        .map(|r| r.component(1).unwrap().decoded().into_owned())
        .collect();
    assert_eq!(prior, ["000654321", "000654000"]);
    let visit = message.get(&"MRG-5.1".parse().unwrap()).unwrap();
    assert_eq!(visit.decoded(), "V-2023-000100");
}

#[test]
fn typed_views_refuse_a_segment_of_another_type() {
    let bytes = cr(ADT_A01);
    let message = Message::parse(&bytes).unwrap();
    let evn = message.segment("EVN").unwrap();
    assert!(hl7::typed::Pid::new(evn).is_none());
    assert!(hl7::typed::Evn::new(evn).is_some());
    assert!(message.observations().next().is_none());
}
