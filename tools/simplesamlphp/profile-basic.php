<?php
/*
 * The `basic` profile (the default): attributes by their plain names with the `basic`
 * NameFormat, and the NameID format the SP's metadata asks for first (jitledger's:
 * emailAddress, filled from the `email` attribute). Nothing to add to the SP's entry.
 */
return [];
