DROP TABLE identity.related_person_phi;
